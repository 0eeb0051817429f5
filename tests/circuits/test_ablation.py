from __future__ import annotations

import numpy as np
import pytest
import torch

from alignscope.circuits.ablation import Component, ablate, component_effects, layer_components, rank_components
from alignscope.circuits.pairs import PromptPair, encode_pair
from alignscope.circuits.patching import activation_patching
from alignscope.errors import InputError
from alignscope.metrics import logit_diff_metric
from tests.circuits.plain_reference import ablated_metric, record
from tests.reference import ATOL

PAIRS = [PromptPair("abcde fg", "abXde Yg", "x", "y"), PromptPair("hello wor", "hexlo wxr", "x", "y")]


def _enc(lm):
    return [encode_pair(lm.tokenizer, p) for p in PAIRS]


def _reference_values(plain, enc, method: str, comps: list[str]) -> list[dict]:
    """Per pair: (component, layer) -> (seq, width) replacement values, computed on the plain model."""
    out = []
    recs = {c: [(record(plain, e.clean_ids, c), record(plain, e.corrupt_ids, c)) for e in enc] for c in comps}
    for i in range(len(enc)):
        vals = {}
        for c in comps:
            for layer in range(len(recs[c][0][0])):
                clean_act, corrupt_act = recs[c][i][0][layer], recs[c][i][1][layer]
                if method == "zero":
                    v = torch.zeros_like(clean_act)
                elif method == "resample":
                    v = corrupt_act
                else:
                    every = torch.cat([t[layer] for pair in recs[c] for t in pair])
                    v = every.mean(0).expand_as(clean_act)
                vals[(c, layer)] = v
        out.append(vals)
    return out


@pytest.mark.parametrize("method", ["zero", "mean", "resample"])
def test_ablation_rows_match_plain_hf(method, strong_lm, strong_plain) -> None:
    lm = strong_lm("qwen2")
    plain = strong_plain("qwen2")
    enc = _enc(lm)
    ranked = [(Component("attn_out", 1), 3.0), (Component("head", 0, 2), 2.0), (Component("mlp_out", 0, position=-1), 1.0),
              (Component("mlp_out", 1), 0.5)]
    pool = [c for c, _ in ranked] + layer_components(lm, "head")
    res = ablate(lm, enc, ranked, method=method, k_max=3, permutations=4, seed=1, pool=pool)
    values = _reference_values(plain, enc, method, ["attn_out", "mlp_out", "head"])
    rng = np.random.default_rng(1)
    random_sets = [[pool[i] for i in rng.choice(len(pool), size=3, replace=False)] for _ in range(4)]
    sets = [[c for c, _ in ranked[:k]] for k in range(4)] + random_sets
    for i, e in enumerate(enc):
        def m(logits, e=e):
            return float(logits[e.answer_id] - logits[e.foil_id])
        for j, s in enumerate(sets):
            abl = [(c.component, c.layer, c.head, c.position) for c in s]
            ref = ablated_metric(plain, e.clean_ids, abl, values[i], lm.n_heads, m)
            assert float(res.per_prompt[i, j]) == pytest.approx(ref, abs=ATOL), (method, i, j)
    assert res.per_prompt[:, 3].sub(res.per_prompt[:, 0]).abs().max() > 1e-2


def test_curve_and_permutation_statistics(strong_lm) -> None:
    lm = strong_lm("llama")
    enc = _enc(lm)
    ranked = [(c, float(-i)) for i, c in enumerate(layer_components(lm, "head"))]
    res = ablate(lm, enc, ranked, method="zero", k_max=2, permutations=30, seed=5)
    v = res.per_prompt.numpy().astype(float)
    effect = (v[:, 2] - v[:, 0]).mean()
    random = (v[:, 3:] - v[:, :1]).mean(0)
    perm = res.permutation
    assert perm["effect"] == pytest.approx(effect)
    assert perm["p_value"] == pytest.approx((1 + (random <= effect).sum()) / 31)
    assert perm["z"] == pytest.approx((effect - random.mean()) / random.std(ddof=1))
    assert [p["k"] for p in res.curve] == [0, 1, 2]
    # k = 0 ablates nothing: the clean metric, all of the behaviour retained.
    assert res.curve[0]["metric_mean"] == pytest.approx(np.mean(res.clean_metrics), abs=1e-5)
    assert res.curve[0]["retained_mean"] == pytest.approx(1.0, abs=1e-4)
    lo, hi = res.curve[1]["metric_ci95"]
    assert lo <= res.curve[1]["metric_mean"] <= hi
    again = ablate(lm, enc, ranked, method="zero", k_max=2, permutations=30, seed=5)
    assert again.permutation == perm  # seeded
    assert res.to_json()["components"] == ["head@L0.H0", "head@L0.H1"]


def test_ranking_from_patching_and_component_effects(strong_lm) -> None:
    lm = strong_lm("gpt2")
    enc = _enc(lm)[0]
    pr = activation_patching(lm, enc.clean_ids, enc.corrupt_ids, component="head", metric=logit_diff_metric(enc.answer_id, enc.foil_id))
    ranked = rank_components(pr)
    assert len(ranked) == lm.n_layers * lm.n_heads and ranked[0][1] == float(pr.effect.max())
    # Whole-layer head components reproduce the head patching effects.
    effects = component_effects(lm, [enc], layer_components(lm, "head"))
    np.testing.assert_allclose(effects, pr.effect.flatten().numpy(), atol=ATOL)
    res_pos = activation_patching(lm, enc.clean_ids, enc.corrupt_ids, component="mlp_out", metric=logit_diff_metric(enc.answer_id, enc.foil_id))
    top = rank_components(res_pos, by_abs=True)[0][0]
    assert top.position is not None and top.position < 0


def test_bad_ablation_options(strong_lm) -> None:
    lm = strong_lm("llama")
    ranked = [(Component("attn_out", 0), 1.0)]
    with pytest.raises(InputError, match="unknown ablation"):
        ablate(lm, _enc(lm), ranked, method="bogus")
    with pytest.raises(InputError, match="permutations"):
        ablate(lm, _enc(lm), ranked, permutations=10_001)
