from __future__ import annotations

import pytest
import torch

from alignscope.circuits.attribution import attribution_patching, attribution_patching_all, faithfulness
from alignscope.errors import InputError
from alignscope.metrics import logit_diff_metric
from tests.circuits.plain_reference import naive_attribution
from tests.reference import ATOL

CLEAN, CORRUPT = "abcde fg", "abXde Yg"
ANSWER, FOIL = 10, 20


def _ids(lm, text):
    return lm.tokenizer(text)["input_ids"]


def _metric_ref(logits: torch.Tensor) -> torch.Tensor:
    return logits[ANSWER] - logits[FOIL]


def _check_against_naive(family: str, ig_steps: int, strong_lm, strong_plain) -> None:
    lm = strong_lm(family)
    plain = strong_plain(lm.model_type)
    clean, corrupt = _ids(lm, CLEAN), _ids(lm, CORRUPT)
    comps = ["resid_pre", "attn_out", "mlp_out", "head"]
    res = attribution_patching_all(lm, clean, corrupt, components=comps, metric=logit_diff_metric(ANSWER, FOIL), ig_steps=ig_steps)
    for comp in comps:
        ref = naive_attribution(plain, clean, corrupt, comp, _metric_ref, lm.n_heads, ig_steps)
        torch.testing.assert_close(res[comp].effect, ref, atol=ATOL, rtol=1e-5, msg=f"{family} {comp}")
        assert ref.abs().max() > 1e-2
    assert res["resid_pre"].method == ("attribution-ig" if ig_steps else "attribution")
    # The model's own weights are left trainable as they were.
    assert all(p.requires_grad for p in lm.hf_model.parameters())


def test_integrated_gradients_match_naive_plain_hf(family, strong_lm, strong_plain) -> None:
    _check_against_naive(family, 3, strong_lm, strong_plain)


def test_plain_gradient_x_delta_matches_naive_plain_hf(strong_lm, strong_plain) -> None:
    _check_against_naive("llama", 0, strong_lm, strong_plain)


def test_ig_completeness_at_the_embeddings(strong_lm) -> None:
    # Integrated gradients on the input: attributions over all positions sum to the metric gap.
    lm = strong_lm("llama")
    res = attribution_patching(lm, _ids(lm, CLEAN), _ids(lm, CORRUPT), metric=logit_diff_metric(ANSWER, FOIL), ig_steps=64)
    gap = res.clean_metric - res.corrupt_metric
    assert abs(gap) > 0.1
    assert float(res.effect[0].sum()) == pytest.approx(gap, rel=2e-3, abs=1e-3)


def test_faithfulness_report_arithmetic() -> None:
    import numpy as np
    from scipy import stats

    from alignscope.circuits.patching import PatchingResult

    rng = np.random.default_rng(0)
    ref_e = torch.tensor(rng.normal(size=(4, 5)), dtype=torch.float32)
    est_e = ref_e + 0.3 * torch.tensor(rng.normal(size=(4, 5)), dtype=torch.float32)
    ref = PatchingResult("resid_pre", "denoise", ref_e, 1.0, -1.0, list("abcde"), 10.0)
    est = PatchingResult("resid_pre", "denoise", est_e, 1.0, -1.0, list("abcde"), 1.5, method="attribution-ig")
    rep = faithfulness(ref, est, k=3)
    a, b = ref_e.flatten().numpy(), est_e.flatten().numpy()
    assert rep["pearson"] == pytest.approx(stats.pearsonr(a, b).statistic, abs=1e-6)
    assert rep["spearman"] == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-6)
    top_ref, top_est = set(np.argsort(-np.abs(a))[:3]), set(np.argsort(-np.abs(b))[:3])
    assert rep["top_k_overlap"] == pytest.approx(len(top_ref & top_est) / 3)
    assert rep["time_ratio"] == pytest.approx(0.15)
    with pytest.raises(InputError, match="shapes differ"):
        faithfulness(ref, PatchingResult("head", "denoise", torch.zeros(2, 2), 1.0, -1.0, [], 1.0))


def test_noise_direction_plain_uses_clean_run_gradient(strong_lm, strong_plain) -> None:
    lm = strong_lm("gpt2")
    plain = strong_plain(lm.model_type)
    clean, corrupt = _ids(lm, CLEAN), _ids(lm, CORRUPT)
    res = attribution_patching(lm, clean, corrupt, metric=logit_diff_metric(ANSWER, FOIL), ig_steps=0, direction="noise")
    # Noising = denoising with the roles of the prompts swapped.
    ref = naive_attribution(plain, corrupt, clean, "resid_pre", _metric_ref, lm.n_heads, 0)
    torch.testing.assert_close(res.effect, ref, atol=ATOL, rtol=1e-5)


def test_negative_steps_rejected(strong_lm) -> None:
    lm = strong_lm("llama")
    with pytest.raises(InputError, match="ig_steps"):
        attribution_patching(lm, _ids(lm, CLEAN), _ids(lm, CORRUPT), metric=logit_diff_metric(ANSWER, FOIL), ig_steps=-1)
