"""Shared fixtures: tiny random-init models of every family (saved to disk) and the embedded model."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings
from safetensors import safe_open
from safetensors.torch import save_file

from alignscope.models.loader import LoadedModel, load_model
from alignscope.models.tiny import TINY_FAMILIES, build_tiny_model

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# Fuzzing profiles: the default keeps CI fast; `pytest --hypothesis-profile=long` searches deeper.
_FUZZ = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large], "derandomize": True}
settings.register_profile("default", max_examples=30, **_FUZZ)
settings.register_profile("long", max_examples=1000, **{**_FUZZ, "derandomize": False})
settings.load_profile("default")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Return a function mapping a family name to a saved tiny model directory (built once)."""
    cache: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in cache:
            cache[family] = build_tiny_model(family, tmp_path_factory.mktemp(f"tiny_{family}"))
        return cache[family]

    return get


@pytest.fixture(scope="session")
def tiny_lm(tiny_dir: Callable[[str], Path]) -> Callable[[str], LoadedModel]:
    """Return a function mapping a family name to a loaded tiny model (loaded once)."""
    cache: dict[str, LoadedModel] = {}

    def get(family: str) -> LoadedModel:
        if family not in cache:
            cache[family] = load_model(str(tiny_dir(family)), device="cpu")
        return cache[family]

    return get


@pytest.fixture(scope="session")
def embedded() -> Iterator[LoadedModel]:
    """The embedded SmolLM2-135M-Instruct (converted from its GGUF once per cache)."""
    yield load_model("default", device="cpu")


@pytest.fixture(params=TINY_FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    """Each tiny architecture family in turn."""
    return str(request.param)


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


@pytest.fixture(scope="session")
def tiny_copy(tiny_dir: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, bool], Path]:
    """Return a function giving a copy of a tiny model directory under another name, optionally with one weight changed."""
    cache: dict[tuple[str, bool], Path] = {}

    def get(family: str, changed: bool = False) -> Path:
        if (family, changed) not in cache:
            dest = tmp_path_factory.mktemp("copies") / f"{family}-{'changed' if changed else 'renamed'}"
            shutil.copytree(tiny_dir(family), dest)
            if changed:
                weights = dest / "model.safetensors"
                with safe_open(str(weights), framework="pt") as fh:
                    meta = fh.metadata()
                    tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
                name = sorted(tensors)[-1]
                tensors[name].view(-1)[0] += 1.0
                save_file(tensors, str(weights), metadata=meta)
            cache[family, changed] = dest
        return cache[family, changed]

    return get
