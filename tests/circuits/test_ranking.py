"""Ranking over pairs against plain-Python arithmetic."""

from __future__ import annotations

import random

import pytest

from alignscope.circuits.ablation import Component
from alignscope.circuits.ranking import first_place_rate, layer_importance, rank_components
from alignscope.errors import InputError
from alignscope.stats import bootstrap_means, permutation_p

COMPS = [Component("attn_out", 0), Component("mlp_out", 0), Component("head", 1, 2)]
EFFECTS = [[0.0, 1.0, 0.2], [0.1, 3.0, -0.4], [0.05, 2.0, 0.5], [0.3, 0.0, 0.1]]


def test_rank_mean_and_causal_fraction() -> None:
    ranked = rank_components(EFFECTS, COMPS, threshold=0.15, n_boot=200, seed=0)
    means = [sum(row[j] for row in EFFECTS) / 4 for j in range(3)]
    assert [r.component for r in ranked] == [COMPS[j] for j in sorted(range(3), key=lambda j: -means[j])]
    by = {r.component: r for r in ranked}
    for j, c in enumerate(COMPS):
        assert by[c].effect == pytest.approx(means[j])
        assert by[c].causal_fraction == pytest.approx(sum(row[j] > 0.15 for row in EFFECTS) / 4)
        lo, hi = by[c].ci95
        assert min(row[j] for row in EFFECTS) <= lo <= by[c].effect <= hi <= max(row[j] for row in EFFECTS)
    assert ranked[0].to_json()["component"] == "mlp_out@L0"
    assert ranked[-1].to_json()["head"] is None or ranked[-1].component.head == 2


def test_layer_importance_sums_per_layer() -> None:
    means = [sum(row[j] for row in EFFECTS) / 4 for j in range(3)]
    assert layer_importance(EFFECTS, COMPS, 2) == pytest.approx([means[0] + means[1], means[2]])


def test_bootstrap_means_match_a_python_resample() -> None:
    import numpy as np

    boots = bootstrap_means(EFFECTS, 50, seed=3)
    idx = np.random.default_rng(3).integers(0, 4, size=(50, 4))
    for b in range(50):
        for j in range(3):
            assert boots[b, j] == pytest.approx(sum(EFFECTS[i][j] for i in idx[b]) / 4)


def test_first_place_rate() -> None:
    dominant = [[0.0, 5.0 + random.Random(i).random(), 0.1] for i in range(10)]
    assert first_place_rate(dominant, 1, n_boot=100) == 1.0
    assert first_place_rate(dominant, 0, n_boot=100) == 0.0
    with pytest.raises(InputError):
        first_place_rate(dominant, 7)


def test_permutation_p() -> None:
    assert permutation_p(0.1, [0.5, 0.6, 0.05]) == pytest.approx((1 + 1) / 4)
    assert permutation_p(0.9, [0.5, 0.6], lower=False) == pytest.approx(1 / 3)


def test_shape_mismatch_is_an_input_error() -> None:
    with pytest.raises(InputError, match="shape"):
        rank_components([[1.0, 2.0]], COMPS)
