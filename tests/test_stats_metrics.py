from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from alignscope.errors import InputError
from alignscope.metrics import kl_divergence, logit_diff_metric, refusal_logodds_metric, refusal_token_ids, single_token_id
from alignscope.stats import gini, mean_ci, pearson, rate, spearman, top_k_concentration, top_k_overlap, wilson_interval


def test_wilson_matches_closed_form() -> None:
    # Reference values computed by hand from the Wilson formula.
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4901625, abs=1e-6) and hi == pytest.approx(0.9433178, abs=1e-6)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    r = rate(3, 40)
    assert r.rate == 0.075 and r.as_dict()["n"] == 40
    with pytest.raises(ValueError):
        wilson_interval(5, 3)


def test_gini_and_concentration() -> None:
    assert gini([1, 1, 1, 1]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 4]) == pytest.approx(0.75)
    assert top_k_concentration([5, 1, 1, 1, 1, 1], k=1) == pytest.approx(0.5)
    assert top_k_concentration([0, 0], k=1) == 0.0


def test_correlations_and_overlap() -> None:
    a = [1.0, 2.0, 3.0, 4.0]
    assert pearson(a, [2.0, 4.0, 6.0, 8.0]) == pytest.approx(1.0)
    assert spearman(a, [1.0, 8.0, 27.0, 64.0]) == pytest.approx(1.0)
    assert math.isnan(pearson(a, [1, 1, 1, 1]))
    assert top_k_overlap([5, 4, 0, 0], [0, 4, 5, 0], k=2) == pytest.approx(0.5)


def test_mean_ci() -> None:
    m, (lo, hi) = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and lo < 2.0 < hi
    assert hi - m == pytest.approx(4.302652729911275 * 1.0 / math.sqrt(3))


def test_logit_metrics_against_arithmetic() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 11)
    assert torch.allclose(logit_diff_metric(2, 5)(logits), logits[:, -1, 2] - logits[:, -1, 5])
    p = torch.softmax(logits[:, -1], -1)[:, [1, 7]].sum(-1)
    assert torch.allclose(refusal_logodds_metric([7, 1, 1])(logits), torch.log(p / (1 - p)), atol=1e-5)
    ref = torch.randn(3, 11)
    pr, q = torch.softmax(ref, -1), torch.softmax(logits[:, -1], -1)
    expected = (pr * (pr.log() - q.log())).sum(-1)
    assert torch.allclose(kl_divergence(ref, logits[:, -1]), expected, atol=1e-6)
    assert torch.equal(kl_divergence(logits[:, -1], logits[:, -1]), torch.zeros(3))
    per_position = kl_divergence(ref[:, None], logits, dtype=torch.float32)  # broadcast: one reference per prompt
    assert per_position.shape == (3, 4) and per_position.dtype == torch.float32
    assert torch.allclose(per_position[:, -1], expected, atol=1e-5)


def test_token_helpers(embedded) -> None:
    ids = refusal_token_ids(embedded.tokenizer)
    assert embedded.tokenizer("I", add_special_tokens=False)["input_ids"][0] in ids
    assert single_token_id(embedded.tokenizer, " Paris") == embedded.tokenizer(" Paris", add_special_tokens=False)["input_ids"][0]
    with pytest.raises(InputError, match="single token"):
        single_token_id(embedded.tokenizer, " antidisestablishmentarianism")
    assert np.isfinite(float(refusal_logodds_metric(ids)(torch.zeros(1, 1, embedded.vocab_size))[0]))
