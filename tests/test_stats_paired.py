"""Paired tests of stats: McNemar against brute-force binomial sums and scipy; bootstraps against plain arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from alignscope.stats import MCNEMAR_EXACT_BELOW, bootstrap_ci, column_mean, mcnemar, paired_bootstrap, paired_rate_test


def brute_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar: sum of Bin(n, 1/2) probabilities at most as likely as the observed split."""
    n = b + c
    probs = [math.comb(n, k) / 2**n for k in range(n + 1)]
    observed = probs[b]
    return min(1.0, sum(p for p in probs if p <= observed + 1e-15))


@pytest.mark.parametrize("b,c", [(0, 0), (0, 3), (5, 1), (4, 4), (10, 2), (12, 11), (0, 24)])
def test_exact_mcnemar_equals_brute_force_and_scipy(b, c) -> None:
    p, method = mcnemar(b, c)
    assert method == "mcnemar-exact"
    if b + c:
        assert p == pytest.approx(brute_exact(b, c), abs=1e-12)
        assert p == pytest.approx(sps.binomtest(b, b + c, 0.5).pvalue, abs=1e-12)
    else:
        assert p == 1.0


@pytest.mark.parametrize("b,c", [(20, 5), (13, 12), (40, 10)])
def test_chi_square_mcnemar_with_continuity_correction(b, c) -> None:
    assert b + c >= MCNEMAR_EXACT_BELOW
    p, method = mcnemar(b, c)
    stat = (abs(b - c) - 1) ** 2 / (b + c)
    assert method == "mcnemar-chi2"
    assert p == pytest.approx(math.erfc(math.sqrt(stat / 2)), abs=1e-12)  # chi2(1) tail = erfc(sqrt(x/2))


def test_paired_rate_test_counts_discordant_pairs() -> None:
    before = [1, 1, 1, 0, 0, 1, 0, 1]
    after = [0, 1, 0, 1, 0, 0, 0, 1]
    t = paired_rate_test(before, after)
    assert t.diff == pytest.approx(sum(after) / 8 - sum(before) / 8)
    assert t.p == pytest.approx(brute_exact(3, 1))  # 3 lost, 1 gained
    assert t.ci95[0] <= t.diff <= t.ci95[1]


def test_paired_bootstrap_of_a_constant_shift_is_exact() -> None:
    before = np.arange(20, dtype=float)[:, None]
    t = paired_bootstrap(before, before + 0.5)
    assert t.diff == pytest.approx(0.5) and t.ci95 == pytest.approx((0.5, 0.5)) and t.p == 0.0
    same = paired_bootstrap(before, before.copy())
    assert same.diff == 0.0 and same.ci95 == (0.0, 0.0) and same.p == 1.0


def test_paired_bootstrap_is_seeded_and_uses_the_statistic() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(40, 2)), rng.normal(size=(40, 2))

    def ratio(rows: np.ndarray) -> float:
        return float(rows[:, 0].sum() / (abs(rows[:, 1]).sum() + 1))

    t1, t2 = paired_bootstrap(a, b, ratio, seed=7), paired_bootstrap(a, b, ratio, seed=7)
    assert t1 == t2
    assert t1.diff == pytest.approx(ratio(b) - ratio(a))
    with pytest.raises(ValueError):
        paired_bootstrap(a, b[:5])


def test_bootstrap_ci_of_the_mean_is_close_to_the_normal_interval() -> None:
    values = np.random.default_rng(0).normal(2.0, 1.0, size=400)
    lo, hi = bootstrap_ci(values[:, None], column_mean, n_boot=4000)
    half = 1.96 * values.std(ddof=1) / math.sqrt(values.size)
    assert lo == pytest.approx(values.mean() - half, abs=0.02) and hi == pytest.approx(values.mean() + half, abs=0.02)
