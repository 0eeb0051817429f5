"""One comparison of two runs' result files, for the kill tests (a resumed run against an uninterrupted one) and the
determinism test (the same command twice).

Two trees are equal when they hold the same result files and every file is equal, bit for bit: JSON, JSONL and CSV
parsed (floats compared by their bits, so NaN equals NaN and 0.0 is not -0.0), safetensors by tensor bytes and parsed
header metadata, anything else by its bytes. Two things are left out, and only these:

* the fields named in :data:`IGNORED_FIELDS` (and any key ending in ``_seconds``), with the reason each is not part of
  a result;
* each run's own output directory inside strings (it names the directory, which differs by construction), read as
  ``ROOT``.
"""

from __future__ import annotations

import csv
import io
import json
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

TEMP_SUFFIX = ".tmp"

IGNORED_FIELDS: Mapping[str, str] = {
    # wall-clock timings: how long a process took, never what it computed (and every key ending in _seconds)
    "seconds": "wall-clock duration of a run, stage or unit",
    "elapsed": "wall-clock duration",
    "duration": "wall-clock duration",
    "tokens_per_second": "throughput: tokens over wall-clock seconds",
    "throughput": "throughput: work over wall-clock seconds",
    "throughput_ratio": "generation speed relative to the base model, from wall-clock times",
    "created": "a timestamp", "started": "a timestamp", "finished": "a timestamp", "timestamp": "a timestamp",
    # the run's history, not its result: a resumed run reuses what an interrupted one finished
    "reused": "which stages or units this process reused rather than computed",
    "computed": "which units this process computed (the complement of `reused`)",
    "resumed_from_step": "the training step this process started from",
    "resumed_from": "the training step this process started from",
    "train/tokens": "tokens this process trained on (the CLI prints it as `tokens this run`)",
    # hashes chained on timings: a stage's fingerprint hashes its upstream stages' outputs, and the select and intervene
    # outputs hold their wall-clock `search_seconds`, so the downstream fingerprints differ between any two runs
    "/fingerprint": "(top level of a file) a run stage's input hash, which chains on upstream wall-clock search_seconds",
}
"""JSON keys left out of the comparison, and why each is not part of the result: ``KEY`` anywhere in a result file
(in a safetensors header's JSON metadata and a CSV's columns too), ``PARENT/KEY`` only inside an object under
``PARENT`` (``/KEY``: at the top level)."""


def is_ignored(key: str, parent: str = "") -> bool:
    """Whether ``key`` (inside an object under ``parent``; ``""``: the top level) is left out of the comparison."""
    return key in IGNORED_FIELDS or f"{parent}/{key}" in IGNORED_FIELDS or key.endswith("_seconds")


def is_temporary(path: Path) -> bool:
    """A file the atomic writer has not renamed yet (``.NAME.xxxx.tmp``): never read as a result."""
    return path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX)


def strip_ignored(obj: Any, root: str | None = None, parent: str = "") -> Any:
    """``obj`` without the keys :func:`is_ignored` names, at any depth, and with ``root`` read as ``ROOT`` in strings."""
    if isinstance(obj, dict):
        return {k: strip_ignored(v, root, k) for k, v in obj.items() if not is_ignored(k, parent)}
    if isinstance(obj, list):
        return [strip_ignored(v, root, parent) for v in obj]
    if isinstance(obj, str) and root:
        return obj.replace(root, "ROOT")
    return obj


def result_files(root: Path, patterns: Iterable[str], skip: Iterable[str] = ()) -> list[Path]:
    """The files under ``root`` matching any glob of ``patterns`` (relative paths, sorted), without temporaries and
    without any under a directory named in ``skip``."""
    skipped = set(skip)
    found = {p.relative_to(root) for pattern in patterns for p in root.glob(pattern)
             if p.is_file() and not is_temporary(p) and not skipped & set(p.relative_to(root).parts[:-1])}
    return sorted(found)


def tree_differences(ref_root: Path, root: Path, patterns: Iterable[str], skip: Iterable[str] = ()) -> list[str]:
    """Every way the result files under ``root`` differ from those under ``ref_root`` (empty: equal)."""
    diffs: list[str] = []
    for pattern in patterns:
        want, got = result_files(ref_root, [pattern], skip), result_files(root, [pattern], skip)
        if not want:
            diffs.append(f"{pattern}: the reference has no such file")
        if want != got:
            diffs.append(f"{pattern}: files {[str(p) for p in got]} instead of {[str(p) for p in want]}")
        for rel in sorted(set(want) & set(got)):
            diffs += [f"{rel}: {d}" for d in file_differences(ref_root / rel, root / rel, str(ref_root), str(root))]
    return diffs


def file_differences(a: Path, b: Path, root_a: str | None = None, root_b: str | None = None) -> list[str]:
    """How file ``b`` differs from ``a`` (each run's output directory read as ``ROOT``)."""
    suffix = a.suffix.lower()
    if suffix == ".safetensors":
        return _tensor_differences(a, b, root_a, root_b)
    if suffix in (".json", ".jsonl", ".csv"):
        return json_differences(strip_ignored(_parsed(a), root_a), strip_ignored(_parsed(b), root_b))
    return [] if a.read_bytes() == b.read_bytes() else ["bytes differ"]


def _parsed(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        return json.loads(text)
    if path.suffix.lower() == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line]
    return list(csv.DictReader(io.StringIO(text)))


def json_differences(a: Any, b: Any, where: str = "") -> list[str]:
    """How parsed ``b`` differs from ``a``, as ``/path: got instead of want`` lines; floats compared by their bits."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where or '/'}: keys {sorted(b)} instead of {sorted(a)}"]
        return [d for k in a for d in json_differences(a[k], b[k], f"{where}/{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where or '/'}: {len(b)} items instead of {len(a)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in json_differences(x, y, f"{where}/{i}")]
    if isinstance(a, float) and isinstance(b, float):  # bit for bit (NaN equals NaN; 0.0 is not -0.0)
        return [] if struct.pack("<d", a) == struct.pack("<d", b) else [f"{where or '/'}: {b!r} instead of {a!r}"]
    if type(a) is not type(b) or a != b:
        return [f"{where or '/'}: {b!r} instead of {a!r}"]
    return []


def _tensor_differences(a: Path, b: Path, root_a: str | None, root_b: str | None) -> list[str]:
    with safe_open(str(a), framework="pt") as fa, safe_open(str(b), framework="pt") as fb:
        meta = json_differences(_metadata(fa.metadata(), root_a), _metadata(fb.metadata(), root_b))
        if meta:
            return [f"metadata {d}" for d in meta]
        if set(fa.keys()) != set(fb.keys()):
            return [f"tensors {sorted(fb.keys())} instead of {sorted(fa.keys())}"]
        diffs = []
        for key in fa.keys():  # noqa: SIM118 (safe_open has no __iter__)
            x, y = fa.get_tensor(key), fb.get_tensor(key)
            if x.dtype != y.dtype or x.shape != y.shape or _raw(x) != _raw(y):
                diffs.append(f"tensor {key} differs")
        return diffs


def _metadata(meta: Mapping[str, str] | None, root: str | None) -> dict[str, Any]:
    """Header metadata with JSON-object values parsed, stripped and with the run's root read as ``ROOT``."""
    parsed: dict[str, Any] = {}
    for key, value in (meta or {}).items():
        try:
            parsed[key] = strip_ignored(json.loads(value) if value.startswith("{") else value, root)
        except ValueError:
            parsed[key] = strip_ignored(value, root)
    return parsed


def _raw(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
