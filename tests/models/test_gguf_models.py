"""Models shipped as GGUF wheels: name resolution, and the optional gemma3-270m (skipped when alignscope[models] is absent)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from alignscope.errors import AlignscopeError
from alignscope.models import embedded
from alignscope.models.embedded import EMBEDDED, GEMMA3, gguf_for


def test_names_and_aliases_resolve() -> None:
    assert gguf_for("default") is EMBEDDED and gguf_for("HuggingFaceTB/SmolLM2-135M-Instruct") is EMBEDDED
    assert gguf_for("gemma3-270m") is GEMMA3 and gguf_for("google/gemma-3-270m") is GEMMA3
    assert gguf_for("meta-llama/Llama-3.1-8B") is None


def test_missing_gemma3_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(AlignscopeError, match=r"pip install 'alignscope\[models\]'"):
        GEMMA3.locate()
    assert not GEMMA3.installed()


@pytest.mark.skipif(importlib.util.find_spec(embedded.GEMMA3_PACKAGE) is None, reason="alignscope[models] is not installed")
def test_gemma3_loads_through_the_bridge_like_plain_hf() -> None:
    from transformers import AutoModelForCausalLM

    from alignscope.models.loader import load_model

    lm = load_model("gemma3-270m", device="cpu", dtype="float32")
    info = lm.info()
    assert (info["model"], info["model_type"], info["n_layers"], info["d_model"]) == ("gemma3-270m", "gemma3_text", 18, 640)
    ids = torch.tensor([lm.tokenizer("The capital of France is")["input_ids"]])
    plain = AutoModelForCausalLM.from_pretrained(lm.source, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        torch.testing.assert_close(lm.bridge(ids), plain(ids).logits, atol=1e-3, rtol=1e-4)
