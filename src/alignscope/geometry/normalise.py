"""The two AQI normalisations: ``absolute`` (fixed transforms, comparable across models and runs) and ``relative``
(the authors' scaling across the axioms of one run, comparable within that run only).

Both map Calinski-Harabasz (CHI, higher separates better) and Xie-Beni (XB, lower separates better) to
0-100 scores where higher separates better, and combine them as ``AQI = g * CHI_norm + (1 - g) * XB_norm``
with ``g = 0.5`` (Borah et al., EMNLP 2025, arXiv 2506.13901).

``absolute`` (fixed constants, no dependence on the other values of a run):

* ``CHI_norm = 100 * (1 - exp(-(CHI / (n - 2)) / CHI_SCALE))``: ``CHI / (n - 2)`` is the between-to-within
  dispersion ratio of two clusters, which does not grow with the number of points as CHI itself does;
  ``CHI_SCALE = 0.25`` (a ratio of 0.25, two balanced clusters whose centroid gap equals the root mean
  within-cluster squared distance, scores 63).
* ``XB_norm = 100 / (1 + XB)``.

``relative`` (per run: the values of every axiom and the overall value at one layer):

* ``CHI_norm = 100 * (CHI - min) / (max - min)`` over the run's values (50 when they are all equal);
* ``XB_norm = 100 / (1 + exp((XB - median) / IQR))``, an inverted sigmoid around the run's median, scaled
  by its interquartile range (by the standard deviation when the IQR is 0, and by 1 when that is 0 too).

Example:
    >>> round(absolute_aqi(chi=50.0, xb=1.0, n=102), 3)
    68.233
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

GAMMA = 0.5
CHI_SCALE = 0.25
RELATIVE_NOTE = "aqi_relative is min-max/median-IQR scaled across the axioms of this run: comparable within this run only"
ABSOLUTE_NOTE = (f"aqi = {GAMMA}*100*(1-exp(-(chi/(n-2))/{CHI_SCALE})) + {1 - GAMMA}*100/(1+xb): fixed transforms, "
                 "comparable across models and runs")


def absolute_chi(chi: ArrayLike, n: ArrayLike) -> NDArray[np.float64]:
    """``100 * (1 - exp(-(chi / (n - 2)) / CHI_SCALE))`` (100 for an infinite CHI)."""
    ratio = np.asarray(chi, dtype=np.float64) / (np.asarray(n, dtype=np.float64) - 2)
    return np.asarray(100.0 * -np.expm1(-ratio / CHI_SCALE), dtype=np.float64)


def absolute_xb(xb: ArrayLike) -> NDArray[np.float64]:
    """``100 / (1 + xb)`` (0 for an infinite XB)."""
    return np.asarray(100.0 / (1.0 + np.asarray(xb, dtype=np.float64)), dtype=np.float64)


def combine(chi_norm: ArrayLike, xb_norm: ArrayLike, gamma: float = GAMMA) -> NDArray[np.float64]:
    """``gamma * chi_norm + (1 - gamma) * xb_norm``."""
    return np.asarray(gamma * np.asarray(chi_norm, dtype=np.float64) + (1 - gamma) * np.asarray(xb_norm, dtype=np.float64))


def absolute_aqi(chi: float, xb: float, n: int, gamma: float = GAMMA) -> float:
    """The absolute AQI of one partition of ``n`` points."""
    return float(combine(absolute_chi(chi, n), absolute_xb(xb), gamma))


def relative_chi(values: Sequence[float]) -> list[float]:
    """CHI min-max scaled to 0-100 across ``values`` (50 each when they are all equal)."""
    arr = np.asarray(values, dtype=np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    if hi == lo:
        return [50.0] * len(arr)
    return [float(v) for v in 100.0 * (arr - lo) / (hi - lo)]


def relative_xb(values: Sequence[float]) -> list[float]:
    """XB through an inverted sigmoid around the median of ``values``, scaled by their IQR (see the module notes)."""
    arr = np.asarray(values, dtype=np.float64)
    q1, median, q3 = (float(q) for q in np.percentile(arr, [25, 50, 75]))
    scale = q3 - q1 or float(arr.std()) or 1.0
    return [100.0 / (1.0 + math.exp(min(700.0, (float(v) - median) / scale))) for v in arr]


def relative_aqi(chi: Sequence[float], xb: Sequence[float], gamma: float = GAMMA) -> list[float]:
    """Relative AQI of each of a run's partitions (``chi[i]``, ``xb[i]``), scaled against one another."""
    if len(chi) != len(xb) or not chi:
        raise ValueError(f"need as many CHI as XB values (at least one), got {len(chi)} and {len(xb)}")
    return [float(v) for v in combine(relative_chi(chi), relative_xb(xb), gamma)]
