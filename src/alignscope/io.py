"""Atomic file writes, streaming safetensors output and content hashes.

Every file a run writes goes through here, so that a killed process leaves either the old
file or the new one, never half of one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save

from alignscope.errors import DiskFullError, InputError

_ST_DTYPES: dict[torch.dtype, str] = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
# safetensors' own writer (``save_file``, which ``save_pretrained`` calls) reports an I/O failure as a SafetensorError whose
# text ends with Rust's rendering of the OS error: "I/O error: No space left on device (os error 28)".
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _full_disk(exc: BaseException, path: Path) -> BaseException:
    """``exc`` as a :class:`DiskFullError` naming ``path`` when it says the disk is full; else ``exc`` itself."""
    if isinstance(exc, DiskFullError):
        return exc
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return DiskFullError(path)
    if isinstance(exc, SafetensorError) and any(int(code) in _FULL for code in _RUST_OS_ERROR.findall(str(exc))):
        return DiskFullError(path)
    return exc


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing and rename it over ``path`` on success.

    Raises:
        DiskFullError: the disk is full (ENOSPC, EDQUOT); the message names ``path``, whose old content is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared and read
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        full = _full_disk(exc, target)
        if full is not exc:
            raise full from None
        raise


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling directory to fill; on success it replaces the directory ``path``.

    A process killed while filling it leaves a hidden ``.NAME.*`` directory, never a partial ``path``
    (an existing ``path`` is removed just before the rename, so a kill there leaves none).

    Raises:
        DiskFullError: the disk filled up while the directory was written (the message names ``path``).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        full = _full_disk(exc, target)
        if full is not exc:
            raise full from None
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_safetensors(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> None:
    """Save tensors as safetensors atomically (contiguous CPU copies are made as needed).

    The same tensors and metadata give the same bytes in every process: the header lists the
    metadata keys sorted and the tensors by decreasing element size, then name (the layout
    safetensors uses), where ``safetensors.torch.save`` orders the metadata by a per-process
    hash, so a file's SHA-256 (which stage records keep) would differ between a run and its resume.
    """
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    if any(t.dtype not in _ST_DTYPES for t in cpu.values()):  # a dtype the writer below does not know: safetensors' own
        atomic_write_bytes(path, st_save(cpu, metadata=dict(metadata) if metadata else None))
        return
    order = sorted(cpu, key=lambda k: (-cpu[k].element_size(), k))
    write_safetensors_streaming(path, {k: (cpu[k].dtype, tuple(cpu[k].shape)) for k in order}, {k: [cpu[k]] for k in order},
                                metadata=metadata)


PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt", ".joblib", ".npy", ".npz")


def refuse_pickle(path: Path) -> None:
    """Refuse a file in a pickle-based format by its name, before anything opens it: alignscope never unpickles."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise InputError(f"{path.suffix} files can hold pickled code and alignscope never unpickles; save the tensors as "
                         "safetensors (safetensors.torch.save_file) and pass that file", path=path)


def read_safetensors(path: str | Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the string metadata of a user-supplied safetensors file (never pickle).

    Raises:
        InputError: the file is missing (``what`` names it, e.g. "direction file") or is not a
            readable safetensors file; the message names the path.
    """
    target = Path(path)
    refuse_pickle(target)
    if not target.is_file():
        raise InputError(f"{what} does not exist", path=target)
    try:
        with safe_open(str(target), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError) as exc:
        raise InputError(f"not a readable safetensors file: {exc}", path=target) from None
    return tensors, meta


def write_safetensors_streaming(
    path: str | Path,
    specs: Mapping[str, tuple[torch.dtype, tuple[int, ...]]],
    chunks: Mapping[str, Iterable[torch.Tensor]],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write a safetensors file tensor by tensor from chunk iterators, holding one chunk at a time.

    Args:
        path: output file, written atomically.
        specs: name -> (dtype, full shape) of every tensor, in file order.
        chunks: name -> iterable of tensors whose concatenation along dim 0 is the full tensor.
        metadata: string metadata stored in the header.
    """
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in sorted(metadata.items())}
    offset = 0
    for name, (dtype, shape) in specs.items():
        nbytes = _numel(shape) * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": _ST_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with atomic_open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for name, (dtype, shape) in specs.items():
            written = 0
            for chunk in chunks[name]:
                data = chunk.detach().to("cpu", dtype).contiguous()
                fh.write(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
                written += data.numel()
            if written != _numel(shape):
                raise ValueError(f"tensor {name!r}: chunks held {written} elements, shape {shape} needs {_numel(shape)}")


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def jsonable(obj: Any) -> Any:
    """Replace NaN/inf by None recursively (dict keys made strings), so the output is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hex SHA-256 of the canonical JSON form of ``obj`` (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=_json_default).encode("utf-8")).hexdigest()


def tensors_digest(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> str:
    """SHA-256 of tensors (name, dtype, shape, bytes, in name order) and sorted metadata.

    Unlike a file hash it does not depend on the header order, which safetensors does not fix.
    """
    digest = hashlib.sha256(json.dumps(sorted((metadata or {}).items())).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()
