"""A tiny model whose last block changes the prediction a lot (random tiny models barely do)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignscope.models.loader import LoadedModel, load_model


@pytest.fixture(scope="session")
def sharp_lm(tiny_dir: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    src = tiny_dir("llama")
    model = AutoModelForCausalLM.from_pretrained(str(src))
    with torch.no_grad():
        torch.manual_seed(0)
        mlp = model.model.layers[1].mlp
        for proj in (mlp.gate_proj, mlp.up_proj, mlp.down_proj):
            proj.weight.normal_(0.0, 0.6)
        model.lm_head.weight.normal_(0.0, 0.6)
    out = tmp_path_factory.mktemp("sharp_llama")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(out)
    return load_model(str(out), device="cpu")
