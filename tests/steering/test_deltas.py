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
from alignscope.steering.interventions import ActivationAddition
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


def plain_prompt_means(model: torch.nn.Module, tok, texts: list[str], n_layers: int) -> torch.Tensor:
    """Each text's mean resid_post over its tokens, each text run alone: (n_texts, n_layers, d)."""
    rows = []
    for text in texts:
        ids = torch.tensor([tok(text)["input_ids"]])
        acts = torch.stack([plain.capture(model, ids, torch.ones_like(ids), layer, "resid_post")[0] for layer in range(n_layers)], 1)
        rows.append(acts.double().mean(0))
    return torch.stack(rows)


def test_svd_of_per_text_differences_matches_numpy(tmp_path: Path, tiny_lm, tiny_dir) -> None:
    import numpy as np

    base = tiny_lm("llama")
    other_dir = build_tiny_model("llama", tmp_path / "seed2", seed=2)
    aligned = load_model(str(other_dir), device="cpu")
    res = model_deltas(base, aligned, CHOSEN, REJECTED, batch_size=2, svd_k=1)
    texts = CHOSEN + REJECTED
    diffs = (plain_prompt_means(load_plain(other_dir), base.tokenizer, texts, 2)
             - plain_prompt_means(load_plain(tiny_dir("llama")), base.tokenizer, texts, 2)).numpy()
    for layer in range(2):
        s = np.linalg.svd(diffs[:, layer], compute_uv=False)
        ev = s**2 / (s**2).sum()
        assert res.per_layer()[layer]["explained_variance_k"] == pytest.approx(ev[1], abs=1e-4)
        _, _, vh = np.linalg.svd(diffs[:, layer], full_matrices=False)
        got = res.svd_vectors()[layer].double().numpy()
        assert abs(abs(float(got @ vh[1])) - 1.0) < 1e-4  # the same component, up to sign
        assert float(res.svd.components[layer, 0].double().numpy() @ diffs[:, layer].mean(0)) >= 0  # signed along the mean
    summary = res.summary()
    assert summary["svd_k"] == 1 and [row["layer"] for row in summary["per_layer"]] == [0, 1]
    norms = res.delta_chosen.norm(dim=-1).tolist()
    growth = [norms[0], norms[1] - norms[0]]
    assert summary["peak_layer"] == growth.index(max(growth))
    with pytest.raises(InputError, match="svd-k 4 must be between 0 and the number of texts minus one \\(3\\)"):
        model_deltas(base, aligned, CHOSEN, REJECTED, svd_k=4)


def test_cached_states_skip_the_forward_passes(tmp_path: Path, tiny_lm, monkeypatch: pytest.MonkeyPatch) -> None:
    import alignscope.activations.prompt_means as pm

    lm = tiny_lm("llama")
    iv = ActivationAddition(torch.ones(lm.d_model), (1,), 2.0)
    first = model_deltas(lm, lm, CHOSEN, REJECTED, instruct_intervention=iv, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 4  # 2 models (with and without the intervention) x 2 groups
    calls = []
    monkeypatch.setattr(pm, "capture_batch", lambda *a, **k: calls.append(1) or (_ for _ in ()).throw(AssertionError("forward pass")))
    again = model_deltas(lm, lm, CHOSEN, REJECTED, instruct_intervention=iv, cache_dir=tmp_path / "cache")
    assert calls == [] and torch.equal(first.delta_chosen, again.delta_chosen)
    other = ActivationAddition(torch.ones(lm.d_model), (1,), 3.0)  # another intervention: another key, so a forward pass
    with pytest.raises(AssertionError, match="forward pass"):
        model_deltas(lm, lm, CHOSEN, REJECTED, instruct_intervention=other, cache_dir=tmp_path / "cache")


def test_an_addition_at_layer_l_puts_the_delta_at_l(tiny_lm, tiny_dir) -> None:
    lm = tiny_lm("llama")
    vec = torch.randn(lm.d_model, generator=torch.Generator().manual_seed(0))
    res = model_deltas(lm, lm, CHOSEN, REJECTED, instruct_intervention=ActivationAddition(vec, (1,), 1.0))
    norms = res.norms()["delta_chosen"]
    assert float(norms[0]) == 0.0 and float(norms[1]) > 0.1 and res.peak_layer == 1
    # reference: the plain model with the vector added to layer 1's input, each text alone
    model = load_plain(tiny_dir("llama"))
    with plain.edits(model, [(1, "resid_pre", plain.add(vec))]):
        steered = plain_mean(model, lm.tokenizer, CHOSEN, 2)
    torch.testing.assert_close(res.mean_instruct_chosen.double(), steered, atol=1e-4, rtol=1e-5)


def test_deltas_file_reads_as_a_direction(tmp_path: Path, tiny_lm) -> None:
    from alignscope.steering.delta_io import save_deltas
    from alignscope.steering.direction_io import load_direction

    lm = tiny_lm("llama")
    res = model_deltas(lm, lm, CHOSEN, REJECTED, instruct_intervention=ActivationAddition(torch.ones(lm.d_model), (1,), 1.0))
    path = save_deltas(tmp_path / "d.safetensors", res, base="b", aligned="a", data_sha256="x")
    d = load_direction(path, d_model=lm.d_model)
    assert d.layer == 1 and d.model == "a" and d.method == "base_vs_aligned_delta"
    torch.testing.assert_close(d.vector, res.delta_chosen[1])
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    torch.testing.assert_close(tensors["delta_rejected"], res.delta_rejected)
    assert tensors["explained_variance"].shape[0] == 2


def test_vocab_mismatch_names_both_models() -> None:
    from alignscope.steering.deltas import check_same_vocab

    with pytest.raises(InputError, match="base-x and aligned-y do not share a tokenizer vocabulary \\(2 vs 1 tokens\\)"):
        check_same_vocab("base-x", {"a": 0, "b": 1}, "aligned-y", {"a": 0})
