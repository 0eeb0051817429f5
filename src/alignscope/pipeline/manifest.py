"""The run manifest: config, package versions, seed, model weights hash and per-stage timings.

The weights hash is :func:`alignscope.models.identity.weights_hash` (the one every resumable
output keys on).

The manifest never holds a token or key: the config carries only the *name* of the
environment variable a judge key is read from, and nothing else from the environment is
recorded.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from alignscope.io import atomic_write_json

PACKAGES = ("alignscope", "torch", "transformers", "transformer-lens", "safetensors", "numpy", "pydantic", "plotly", "matplotlib")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a run depends on, plus Python and the platform."""
    versions: dict[str, str | None] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


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
