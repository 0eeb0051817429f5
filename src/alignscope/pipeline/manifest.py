"""The run manifest: config, package versions, seed, model weights hash and per-stage timings.

The weights hash is :func:`alignscope.models.identity.weights_hash` (the one every resumable
output keys on).

The manifest never holds a token or key: the config carries only the *name* of the
environment variable a judge key is read from, and ``secrets_present`` lists which of the
variables alignscope or its libraries read a secret from were set (:data:`SECRET_VARIABLES`,
plus the judge's), never their values.
"""

from __future__ import annotations

import os
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


SECRET_VARIABLES: tuple[str, ...] = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY", "ALIGNSCOPE_JUDGE_API_KEY")


def secrets_present(extra: tuple[str, ...] = ()) -> list[str]:
    """The names (never the values) of the secret-holding environment variables that are set."""
    return sorted({name for name in (*SECRET_VARIABLES, *extra) if os.environ.get(name)})


def _judge_key_variable(config: Mapping[str, Any]) -> tuple[str, ...]:
    judge = (config.get("evaluate") or {}).get("judge") if isinstance(config.get("evaluate"), Mapping) else None
    name = judge.get("api_key_env") if isinstance(judge, Mapping) else None
    return (name,) if isinstance(name, str) and name else ()


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
        "secrets_present": secrets_present(_judge_key_variable(config)),
    }
    atomic_write_json(path, payload)
    return Path(path)
