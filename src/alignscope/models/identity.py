"""Which model a result was computed with: the weights' SHA-256, not the name it was loaded under.

Every resumable output (a capture's parts, tuned-lens checkpoints, pipeline stage records)
keys its fingerprint on :func:`resume_key` (weights hash and dtype), so a renamed or moved copy of the same
weights resumes, and the same name with different weights does not.

The weights hash of a model loaded from a directory (or the HF cache) is the SHA-256 over the
sorted ``(file name, file SHA-256)`` pairs of its weight files (the run manifest's
``model.sha256``). A model with no weight files on disk (built in memory, or a hub id that is
not cached) is hashed from its state dict instead: every tensor's name, dtype, shape and bytes,
in name order. Hashing happens at most once per :class:`~alignscope.models.loader.LoadedModel`
(the identity is cached on it) and once per weight file per process (keyed by path, size and
modification time); ``weights_hash(..., cache_file=...)`` also keeps the file hashes across
processes.

Example:
    >>> ident = model_identity(lm)                     # doctest: +SKIP
    >>> ident.key() == resume_key(weights_hash(lm.source)["sha256"], "float32")   # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alignscope.io import atomic_write_json, sha256_file, tensors_digest
from alignscope.models.loader import LoadedModel

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
_CACHE_KEY = "identity"
_FILE_DIGESTS: dict[str, str] = {}
"""Per-process cache of file hashes, keyed by ``resolved path|size|mtime_ns``."""


@dataclass(frozen=True)
class ModelIdentity:
    """A loaded model's name, shape, dtype and weights hash.

    Attributes:
        name: the name it was loaded under (recorded, never compared).
        model_type: ``config.model_type``.
        n_layers: decoder blocks.
        d_model: residual width.
        dtype: the dtype it runs in, e.g. ``float32``.
        weights_sha256: see the module docstring.
    """

    name: str
    model_type: str
    n_layers: int
    d_model: int
    dtype: str
    weights_sha256: str

    def key(self) -> dict[str, Any]:
        """What resume fingerprints hash (:func:`resume_key`); the name and shapes are only recorded."""
        return resume_key(self.weights_sha256, self.dtype)


def resume_key(weights_sha256: str, dtype: str) -> dict[str, Any]:
    """The model part of every resume fingerprint: the weights hash and the dtype they run in.

    The weights fix the architecture's shapes, so those add nothing; the name is left out so a
    renamed copy resumes. The pipeline builds this from :func:`weights_hash` without loading.
    """
    return {"weights_sha256": weights_sha256, "dtype": dtype}


def weight_files(source: str | Path) -> list[Path]:
    """The weight files of a local model directory, sorted by name (empty for a hub id not on disk)."""
    root = Path(source)
    if not root.is_dir():
        try:
            from huggingface_hub import snapshot_download  # optional: only for hub ids

            root = Path(snapshot_download(str(source), local_files_only=True))
        except Exception:  # not cached, or not a hub id: no files to hash
            return []
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def weights_hash(source: str | Path, cache_file: str | Path | None = None) -> dict[str, Any]:
    """``{"sha256": combined, "files": {name: sha256}}`` of the weight files of ``source``.

    ``combined`` is the SHA-256 of the JSON list of sorted ``[name, sha256]`` pairs (None when
    there are no weight files). File hashes are reused within the process, and across processes
    through ``cache_file`` (a JSON map keyed by each file's path, size and modification time).
    """
    stored: dict[str, Any] = {}
    if cache_file is not None and Path(cache_file).is_file():
        try:
            stored = json.loads(Path(cache_file).read_text(encoding="utf-8"))
        except ValueError:
            stored = {}
    files: dict[str, str] = {}
    fresh: dict[str, str] = {}
    for path in weight_files(source):
        stat = path.stat()
        key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        digest = _FILE_DIGESTS.get(key) or stored.get(key) or sha256_file(path)
        _FILE_DIGESTS[key] = files[path.name] = fresh[key] = digest
    if cache_file is not None and fresh != stored:
        atomic_write_json(cache_file, fresh)
    combined = hashlib.sha256(json.dumps(sorted(files.items())).encode()).hexdigest() if files else None
    return {"sha256": combined, "files": files}


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``float32``."""
    return str(dtype).removeprefix("torch.")


def model_identity(lm: LoadedModel) -> ModelIdentity:
    """The identity of ``lm``, computed on first use and cached on it (see the module docstring)."""
    cached = lm.extra.get(_CACHE_KEY)
    if isinstance(cached, ModelIdentity):
        return cached
    sha = weights_hash(lm.source)["sha256"] or tensors_digest(lm.hf_model.state_dict())
    ident = ModelIdentity(lm.name, lm.model_type, lm.n_layers, lm.d_model, dtype_name(lm.dtype), sha)
    lm.extra[_CACHE_KEY] = ident
    return ident
