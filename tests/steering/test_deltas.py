"""Base-vs-instruct deltas on two tiny models (same config, different seeds) against plain arithmetic."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from alignscope.errors import InputError
from alignscope.models.loader import load_model
from alignscope.models.tiny import build_tiny_model
from alignscope.steering.deltas import model_deltas
from tests.reference import load_plain
from tests.steering import plain

CHOSEN = ["Human: hi\n\nAssistant: hello, how can I help?", "a kind answer"]
REJECTED = ["Human: hi\n\nAssistant: go away", "a rude answer here, really rude"]


def plain_mean(model: torch.nn.Module, tok, texts: list[str], n_layers: int) -> torch.Tensor:
    """Mean resid_post over every token of every text, each text run alone."""
    rows = []
    for text in texts:
        ids = torch.tensor([tok(text)["input_ids"]])
        mask = torch.ones_like(ids)
        rows.append(torch.stack([plain.capture(model, ids, mask, layer, "resid_post")[0] for layer in range(n_layers)], 1))
    return torch.cat(rows).double().mean(0)


def test_model_deltas_match_plain(tmp_path: Path, tiny_lm, tiny_dir) -> None:
    base = tiny_lm("llama")
    other_dir = build_tiny_model("llama", tmp_path / "seed1", seed=1)
    instruct = load_model(str(other_dir), device="cpu")
    res = model_deltas(base, instruct, CHOSEN, REJECTED, batch_size=1)
    b = plain_mean(load_plain(tiny_dir("llama")), base.tokenizer, CHOSEN, 2)
    i = plain_mean(load_plain(other_dir), base.tokenizer, CHOSEN, 2)
    torch.testing.assert_close(res.delta_chosen.double(), i - b, atol=1e-4, rtol=1e-5)
    cos = torch.nn.functional.cosine_similarity(b, i, dim=-1)
    torch.testing.assert_close(res.cosine_chosen.double(), cos, atol=1e-5, rtol=1e-5)
    rb = plain_mean(load_plain(tiny_dir("llama")), base.tokenizer, REJECTED, 2)
    torch.testing.assert_close(res.norms()["base_rejected"].double(), rb.norm(dim=-1), atol=1e-4, rtol=1e-5)
    assert res.n_tokens_chosen == sum(len(t) for t in CHOSEN)  # char-level tokenizer
    data = res.to_json()
    assert len(data["cosine_rejected"]) == 2 and set(data["norms"]) >= {"delta_chosen", "delta_rejected"}
    same = model_deltas(base, base, CHOSEN, REJECTED)
    assert same.delta_chosen.abs().max() == 0 and torch.allclose(same.cosine_chosen, torch.ones(2))


def test_different_tokenizers_are_rejected(tiny_lm, tiny_dir) -> None:
    from transformers import AutoTokenizer

    lm = tiny_lm("llama")
    tok = AutoTokenizer.from_pretrained(str(tiny_dir("llama")))
    tok.add_tokens(["<extra>"])
    with pytest.raises(InputError, match="do not share a tokenizer"):
        model_deltas(lm, replace(lm, tokenizer=tok), CHOSEN, REJECTED)
