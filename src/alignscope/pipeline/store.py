"""Checkpoints of a run's stages: ``OUT/stages/<stage>.json`` plus optional ``<stage>.safetensors``.

Each stage's record holds a *fingerprint*: the hash of everything the stage's output depends on
(its config fields, the model's weights hash, the prompts, and the *content* hashes of the
records it reads). A stage is reused on a rerun only when its record exists, parses, carries
the same fingerprint, and its tensors and extra files match the hashes the record stores.
Anything else is recomputed, so a changed config redoes exactly the stages it affects, and a
recomputed stage whose output changed invalidates everything downstream of it.

Writes are atomic and ordered: the tensors file first, then the JSON record, which names the
tensors file's SHA-256. A run killed at any moment (``kill -9`` included) leaves either no
record, or a complete record with its tensors; a half-written stage is never reused.

Example:
    >>> store = StageStore(tmp_path)
    >>> _ = store.save("extract", "abc", {"layers": 2}, seconds=1.0)
    >>> store.load("extract", "abc").output
    {'layers': 2}
    >>> store.load("extract", "other") is None
    True
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from alignscope.io import atomic_write_json, save_safetensors, sha256_file, sha256_json, tensors_digest
from alignscope.resume import same_run

log = logging.getLogger(__name__)

RECORD_FORMAT = "alignscope.stage/1"


@dataclass(frozen=True)
class StageRecord:
    """A finished stage: its JSON output, tensors (possibly empty), timing, fingerprint and extra files.

    ``files`` are paths relative to the run directory, checked by hash on reuse.
    """

    stage: str
    fingerprint: str
    output: dict[str, Any]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    seconds: float = 0.0
    reused: bool = False
    files: tuple[str, ...] = ()
    content: str = ""
    """SHA-256 of the output (less its ``provenance`` keys), the tensors and the extra files: what downstream fingerprints
    chain on."""


def content_digest(output: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], root: Path, files: Sequence[str],
                   provenance: Sequence[str] = ()) -> str:
    """A finished stage's content hash: its output without the ``provenance`` keys (how the stage ran rather than what
    it computed: wall times, measured speeds, the step a training resumed from; they differ between two runs that
    computed the same thing; ``a.b`` names key ``b`` of the mapping under ``a``), its tensors and its extra files."""
    kept = json.loads(json.dumps(dict(output)))
    for path in provenance:
        *parents, leaf = path.split(".")
        where = kept
        for name in parents:
            where = where.get(name) if isinstance(where, dict) else None
        if isinstance(where, dict):
            where.pop(leaf, None)
    return sha256_json([kept, tensors_digest(tensors), [file_digest(root / f) for f in sorted(files)]])


def file_digest(path: Path) -> str:
    """Content digest of a file: :func:`tensors_digest` for safetensors, the byte hash otherwise."""
    if path.suffix != ".safetensors":
        return sha256_file(path)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return tensors_digest({k: fh.get_tensor(k) for k in fh.keys()}, fh.metadata())  # noqa: SIM118


def fingerprint(stage: str, *parts: Any) -> str:
    """SHA-256 of the stage name and the JSON form of ``parts`` (order matters)."""
    return sha256_json({"stage": stage, "format": RECORD_FORMAT, "parts": list(parts)})


class StageStore:
    """Reads and writes stage records under ``root/stages``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.dir = self.root / "stages"

    def json_path(self, stage: str) -> Path:
        """The record file of ``stage``."""
        return self.dir / f"{stage}.json"

    def tensors_path(self, stage: str) -> Path:
        """The tensors file of ``stage``."""
        return self.dir / f"{stage}.safetensors"

    def load(self, stage: str, expected: str) -> StageRecord | None:
        """The stage's record when it is complete and its fingerprint is ``expected``; else None."""
        path = self.json_path(stage)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            found = record["fingerprint"]
            output = record["output"]
            seconds = float(record.get("seconds", 0.0))
            tensor_hash = record.get("tensors_sha256")
            files = dict(record.get("files") or {})
            provenance = [str(k) for k in record.get("provenance") or []]
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("stage %s: checkpoint %s is unreadable; recomputing", stage, path)
            return None
        if not same_run(found, expected, where=path, what=f"the {stage} stage", inputs="config, model weights, prompts or upstream stages",
                        on_mismatch="redo"):
            return None
        for name, digest in files.items():
            extra = self.root / name
            if not extra.is_file() or sha256_file(extra) != digest:
                log.warning("stage %s: file %s missing or altered; recomputing", stage, extra)
                return None
        tensors: dict[str, torch.Tensor] = {}
        if tensor_hash is not None:
            tensors_file = self.tensors_path(stage)
            if not tensors_file.is_file() or sha256_file(tensors_file) != tensor_hash:
                log.warning("stage %s: tensors file missing or altered; recomputing", stage)
                return None
            from safetensors.torch import load_file

            tensors = load_file(str(tensors_file))
        content = content_digest(output, tensors, self.root, list(files), provenance)
        return StageRecord(stage, found, output, tensors, seconds, reused=True, files=tuple(files), content=content)

    def save(self, stage: str, fp: str, output: Mapping[str, Any], tensors: Mapping[str, torch.Tensor] | None = None,
             *, seconds: float = 0.0, files: Sequence[str] = (), provenance: Sequence[str] = ()) -> StageRecord:
        """Write the stage's tensors (if any), then its record; returns the record.

        ``files`` are paths relative to the run directory that the stage already wrote
        (atomically); their hashes go into the record and are checked on reuse. ``provenance`` names the
        output's keys that say how the stage ran (wall times, speeds, a resumed step; see
        :func:`content_digest`): they are kept, but left out of the record's content, so a stage recomputed
        to the same result leaves its downstream stages reusable.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        tensor_hash = None
        kept: dict[str, torch.Tensor] = {}
        if tensors:
            kept = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
            save_safetensors(self.tensors_path(stage), kept)
            tensor_hash = sha256_file(self.tensors_path(stage))
        hashes = {name: sha256_file(self.root / name) for name in files}
        record = {"format": RECORD_FORMAT, "stage": stage, "fingerprint": fp, "seconds": seconds, "tensors_sha256": tensor_hash,
                  "files": hashes, "output": dict(output)}
        if provenance:  # absent otherwise: records written before it existed hash as they did
            record["provenance"] = list(provenance)
        atomic_write_json(self.json_path(stage), record)
        content = content_digest(output, kept, self.root, files, provenance)
        return StageRecord(stage, fp, dict(output), kept, seconds, files=tuple(files), content=content)
