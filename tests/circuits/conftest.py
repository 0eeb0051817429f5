"""Fixtures for the circuits tests: tiny models with weights large enough for patching to matter.

The shared tiny models keep HF's 0.02 init, so every patch moves the logits by ~1e-6 and a
1e-4 comparison could not fail. These copies redraw each weight matrix at ~1/sqrt(width) scale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignscope.models.loader import LoadedModel, load_model


@pytest.fixture(scope="session")
def strong_dir(tiny_dir: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Family -> directory of a tiny model with O(1) weights (built once per session)."""
    cache: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in cache:
            src = tiny_dir(family)
            model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32)
            gen = torch.Generator().manual_seed(1)
            with torch.no_grad():
                for name, param in model.named_parameters():
                    if param.ndim == 2 and not any(k in name for k in ("embed", "wte", "wpe", "word_embeddings")):
                        param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
            out = tmp_path_factory.mktemp(f"strong_{family}")
            model.save_pretrained(out)
            AutoTokenizer.from_pretrained(str(src)).save_pretrained(out)
            cache[family] = out
        return cache[family]

    return get


@pytest.fixture(scope="session")
def strong_lm(strong_dir: Callable[[str], Path]) -> Callable[[str], LoadedModel]:
    """Family -> loaded strong tiny model (loaded once per session)."""
    cache: dict[str, LoadedModel] = {}

    def get(family: str) -> LoadedModel:
        if family not in cache:
            cache[family] = load_model(str(strong_dir(family)), device="cpu")
        return cache[family]

    return get


@pytest.fixture(scope="session")
def strong_plain(strong_dir: Callable[[str], Path]) -> Callable[[str], torch.nn.Module]:
    """Family -> a fresh plain HF copy of the strong tiny model (never the bridge's), loaded once."""
    from tests.reference import load_plain

    cache: dict[str, torch.nn.Module] = {}

    def get(family: str) -> torch.nn.Module:
        if family not in cache:
            cache[family] = load_plain(strong_dir(family))
        return cache[family]

    return get


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models run op by op: one thread avoids thread hand-off costs that dominate on a busy 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
