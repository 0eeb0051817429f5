"""Small statistics used across alignscope: intervals, concentration measures and correlations.

Every rate alignscope reports carries its n and a 95% interval; these are the formulas.

Example:
    >>> lo, hi = wilson_interval(8, 10)
    >>> round(lo, 3), round(hi, 3)
    (0.49, 0.943)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Rate:
    """A proportion with its count and 95% Wilson interval."""

    k: int
    n: int
    rate: float
    ci95: tuple[float, float]

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"k": self.k, "n": self.n, "rate": self.rate, "ci95": list(self.ci95)}


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials (``(0, 1)`` when ``n == 0``)."""
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= k <= n:
        raise ValueError(f"k={k} must lie in 0..n={n}")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return (lo, hi)


def rate(k: int, n: int) -> Rate:
    """A :class:`Rate` for ``k`` of ``n`` (rate is NaN when ``n == 0``)."""
    return Rate(k, n, k / n if n else float("nan"), wilson_interval(k, n))


def mean_ci(values: Sequence[float], z: float = Z95) -> tuple[float, tuple[float, float]]:
    """Mean and normal-approximation 95% interval (t-based for small n)."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return float("nan"), (float("nan"), float("nan"))
    mean = float(arr.mean())
    if arr.size == 1:
        return mean, (mean, mean)
    crit = float(sps.t.ppf(0.975, arr.size - 1)) if arr.size < 30 else z
    half = crit * float(arr.std(ddof=1)) / math.sqrt(arr.size)
    return mean, (mean - half, mean + half)



@dataclass(frozen=True)
class MeanCI:
    """A mean with its 95% interval (:func:`mean_ci`) and the number of finite values it is over."""

    mean: float
    ci95: tuple[float, float]
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> MeanCI:
        """The mean of the finite ``values`` (NaN and inf are left out and not counted)."""
        finite = [v for v in values if np.isfinite(v)]
        mean, (lo, hi) = mean_ci(finite)
        return cls(mean, (lo, hi), len(finite))

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form: ``{"mean", "ci95", "n"}``."""
        return {"mean": self.mean, "ci95": list(self.ci95), "n": self.n}


def gini(values: Sequence[float]) -> float:
    """Gini coefficient of the absolute values (0: spread evenly, near 1: all in one place)."""
    arr = np.sort(np.abs(np.asarray(values, dtype=float)))
    n = arr.size
    total = arr.sum()
    if n == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float((2 * (ranks * arr).sum()) / (n * total) - (n + 1) / n)


def top_k_concentration(values: Sequence[float], k: int = 5) -> float:
    """Share of the total absolute value held by the ``k`` largest entries."""
    arr = np.sort(np.abs(np.asarray(values, dtype=float)))[::-1]
    total = arr.sum()
    return float(arr[:k].sum() / total) if total > 0 else 0.0


def pearson(a: Sequence[float], b: Sequence[float]) -> float:
    """Pearson correlation (NaN when either side is constant)."""
    x, y = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if x.size < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (NaN when either side is constant)."""
    x, y = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if x.size < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(sps.spearmanr(x, y).statistic)


def top_k_overlap(a: Sequence[float], b: Sequence[float], k: int) -> float:
    """Fraction of the ``k`` largest-|value| indices of ``a`` that are also in ``b``'s top ``k``."""
    x, y = np.abs(np.asarray(a, dtype=float).ravel()), np.abs(np.asarray(b, dtype=float).ravel())
    k = min(k, x.size)
    if k == 0:
        return float("nan")
    return len(set(np.argsort(-x)[:k].tolist()) & set(np.argsort(-y)[:k].tolist())) / k


MCNEMAR_EXACT_BELOW = 25
"""McNemar's test is the exact binomial test when fewer than this many pairs are discordant."""


@dataclass(frozen=True)
class PairedTest:
    """An after-minus-before difference on the same items, its 95% interval and a paired test's p-value."""

    diff: float
    ci95: tuple[float, float]
    p: float
    test: str

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"diff": self.diff, "ci95": list(self.ci95), "p": self.p, "test": self.test}


def mcnemar(b: int, c: int) -> tuple[float, str]:
    """Two-sided McNemar p-value from the discordant counts ``b`` (1 before, 0 after) and ``c`` (0 before, 1 after).

    Exact binomial (``2 * P(X <= min(b, c))``, X ~ Bin(b + c, 1/2), capped at 1) when ``b + c`` is
    below :data:`MCNEMAR_EXACT_BELOW`, else the chi-square statistic with continuity correction
    ``(|b - c| - 1)^2 / (b + c)`` on one degree of freedom. Returns ``(p, method)``.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b} and {c}")
    n = b + c
    if n == 0:
        return 1.0, "mcnemar-exact"
    if n < MCNEMAR_EXACT_BELOW:
        return min(1.0, 2.0 * float(sps.binom.cdf(min(b, c), n, 0.5))), "mcnemar-exact"
    stat = (abs(b - c) - 1) ** 2 / n
    return float(sps.chi2.sf(stat, 1)), "mcnemar-chi2"


Statistic = Callable[[np.ndarray], float]
"""Maps rows of per-item values ``(m, k)`` (a resample of the items) to one number."""


def column_mean(rows: np.ndarray) -> float:
    """The mean of the first column: the statistic of a rate or a per-item score."""
    return float(rows[:, 0].mean()) if rows.shape[0] else float("nan")


def _resamples(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return (float(lo), float(hi))


def bootstrap_ci(rows: np.ndarray, statistic: Statistic = column_mean, *, n_boot: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of ``statistic`` over the items (rows) of ``rows``, seeded."""
    n = rows.shape[0]
    if n == 0:
        return (float("nan"), float("nan"))
    return _percentiles(np.array([statistic(rows[idx]) for idx in _resamples(n, n_boot, seed)]))


def paired_bootstrap(before: np.ndarray, after: np.ndarray, statistic: Statistic = column_mean, *,
                     n_boot: int = 2000, seed: int = 0) -> PairedTest:
    """``statistic(after) - statistic(before)`` with a paired percentile-bootstrap interval and p-value.

    Both arrays hold the same items in the same order (row ``i`` of each is item ``i``); every
    resample draws the same rows from both. The two-sided p-value is
    ``min(1, 2 * min(share of resampled differences <= 0, share >= 0))``.
    """
    if before.shape[0] != after.shape[0]:
        raise ValueError(f"paired arrays differ in length: {before.shape[0]} and {after.shape[0]}")
    diff = statistic(after) - statistic(before)
    n = before.shape[0]
    if n == 0:
        return PairedTest(float("nan"), (float("nan"), float("nan")), float("nan"), "paired-bootstrap")
    deltas = np.array([statistic(after[idx]) - statistic(before[idx]) for idx in _resamples(n, n_boot, seed)])
    finite = deltas[np.isfinite(deltas)]
    p = min(1.0, 2.0 * min(float((finite <= 0).mean()), float((finite >= 0).mean()))) if finite.size else float("nan")
    return PairedTest(float(diff), _percentiles(deltas), p, "paired-bootstrap")


def paired_rate_test(before: Sequence[int], after: Sequence[int], *, n_boot: int = 2000, seed: int = 0) -> PairedTest:
    """Difference of two paired 0/1 rates: McNemar's p-value and a paired-bootstrap interval of the difference."""
    a, b = np.asarray(before, dtype=float)[:, None], np.asarray(after, dtype=float)[:, None]
    boot = paired_bootstrap(a, b, n_boot=n_boot, seed=seed)
    lost = int(((a == 1) & (b == 0)).sum())
    gained = int(((a == 0) & (b == 1)).sum())
    p, method = mcnemar(lost, gained)
    return PairedTest(boot.diff, boot.ci95, p, method)


def bootstrap_means(values: Any, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Means of ``n_boot`` seeded resamples (with replacement) of the rows of ``values`` ``(n, ...)``: ``(n_boot, ...)``."""
    arr = np.asarray(values, dtype=float)
    if arr.shape[0] == 0:
        raise ValueError("no values to resample")
    return arr[_resamples(arr.shape[0], n_boot, seed)].mean(axis=1)  # type: ignore[no-any-return]


def percentile_ci(samples: Any, axis: int = 0) -> tuple[Any, Any]:
    """The 2.5% and 97.5% percentiles of ``samples`` along ``axis`` (a percentile-bootstrap 95% interval)."""
    lo, hi = np.percentile(np.asarray(samples, dtype=float), [2.5, 97.5], axis=axis)
    return lo, hi


def permutation_p(observed: float, null: Sequence[float], *, lower: bool = True) -> float:
    """One-sided permutation p-value ``(1 + #{null at least as extreme}) / (N + 1)`` (``lower``: smaller is extreme)."""
    hits = sum(1 for x in null if (x <= observed if lower else x >= observed))
    return (1 + hits) / (len(null) + 1)
