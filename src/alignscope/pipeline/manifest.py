"""The run manifest: config, package versions, seed, model weights hash and per-stage timings.

The manifest never holds a token or key: the config carries only the *name* of the
environment variable a judge key is read from, and nothing else from the environment is
recorded.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from alignscope.io import atomic_write_json, sha256_file

PACKAGES = ("alignscope", "torch", "transformers", "transformer-lens", "safetensors", "numpy", "pydantic", "plotly", "matplotlib")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a run depends on, plus Python and the platform."""
    versions: dict[str, str | None] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def weight_files(source: str | Path) -> list[Path]:
    """The weight files of a local model directory, sorted by name (empty for a hub id not on disk)."""
    root = Path(source)
    if not root.is_dir():
        try:
            from huggingface_hub import snapshot_download

            root = Path(snapshot_download(str(source), local_files_only=True))
        except Exception:  # not cached, or not a hub id: no files to hash
            return []
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def model_hash(source: str | Path, cache_file: str | Path | None = None) -> dict[str, Any]:
    """SHA-256 of every weight file and one combined hash over (name, hash) pairs.

    Hashing a large model takes seconds, so results are cached in ``cache_file`` keyed by each
    file's size and modification time.
    """
    cache: dict[str, Any] = {}
    if cache_file is not None and Path(cache_file).is_file():
        try:
            cache = json.loads(Path(cache_file).read_text(encoding="utf-8"))
        except ValueError:
            cache = {}
    files: dict[str, str] = {}
    fresh: dict[str, Any] = {}
    for path in weight_files(source):
        stat = path.stat()
        key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        digest = cache.get(key) or sha256_file(path)
        files[path.name] = digest
        fresh[key] = digest
    if cache_file is not None and fresh != cache:
        atomic_write_json(cache_file, fresh)
    combined = hashlib.sha256(json.dumps(sorted(files.items())).encode()).hexdigest() if files else None
    return {"sha256": combined, "files": files}


def write_manifest(path: str | Path, *, config: Mapping[str, Any], seed: int, model: Mapping[str, Any],
                   stages: Mapping[str, Mapping[str, Any]], seconds: float, config_path: str | None) -> Path:
    """Write ``manifest.json`` atomically; returns its path."""
    payload = {
        "format": "alignscope.run-manifest/1",
        "config_file": config_path,
        "config": dict(config),
        "seed": seed,
        "model": dict(model),
        "versions": package_versions(),
        "stages": {k: dict(v) for k, v in stages.items()},
        "seconds_total": round(seconds, 3),
    }
    atomic_write_json(path, payload)
    return Path(path)
