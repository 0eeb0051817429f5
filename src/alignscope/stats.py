"""Small statistics used across alignscope: intervals, concentration measures and correlations.

Every rate alignscope reports carries its n and a 95% interval; these are the formulas.

Example:
    >>> lo, hi = wilson_interval(8, 10)
    >>> round(lo, 3), round(hi, 3)
    (0.49, 0.943)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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


def bootstrap_means(values: Any, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Means of ``n_boot`` seeded resamples (with replacement) of the rows of ``values`` ``(n, ...)``: ``(n_boot, ...)``."""
    arr = np.asarray(values, dtype=float)
    if arr.shape[0] == 0:
        raise ValueError("no values to resample")
    idx = np.random.default_rng(seed).integers(0, arr.shape[0], size=(n_boot, arr.shape[0]))
    return arr[idx].mean(axis=1)  # type: ignore[no-any-return]


def percentile_ci(samples: Any, axis: int = 0) -> tuple[Any, Any]:
    """The 2.5% and 97.5% percentiles of ``samples`` along ``axis`` (a percentile-bootstrap 95% interval)."""
    lo, hi = np.percentile(np.asarray(samples, dtype=float), [2.5, 97.5], axis=axis)
    return lo, hi


def permutation_p(observed: float, null: Sequence[float], *, lower: bool = True) -> float:
    """One-sided permutation p-value ``(1 + #{null at least as extreme}) / (N + 1)`` (``lower``: smaller is extreme)."""
    hits = sum(1 for x in null if (x <= observed if lower else x >= observed))
    return (1 + hits) / (len(null) + 1)
