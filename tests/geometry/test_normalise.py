"""The absolute and relative AQI normalisations against their formulas written out with ``math``."""

from __future__ import annotations

import math
import statistics

import pytest

from alignscope.geometry.normalise import CHI_SCALE, absolute_aqi, relative_aqi, relative_chi, relative_xb


@pytest.mark.parametrize(("chi", "xb", "n"), [(0.0, 5.0, 10), (12.5, 0.3, 40), (400.0, 0.01, 402)])
def test_absolute_aqi_formula(chi: float, xb: float, n: int) -> None:
    expected = 0.5 * 100 * (1 - math.exp(-(chi / (n - 2)) / CHI_SCALE)) + 0.5 * 100 / (1 + xb)
    assert absolute_aqi(chi, xb, n) == pytest.approx(expected, rel=1e-12)
    assert 0 <= absolute_aqi(chi, xb, n) <= 100


def test_relative_scaling_follows_min_max_and_median_iqr() -> None:
    chi, xb = [3.0, 7.0, 11.0, 5.0], [0.9, 0.4, 0.1, 2.0]
    assert relative_chi(chi) == pytest.approx([0.0, 50.0, 100.0, 25.0])
    q = statistics.quantiles(xb, n=4, method="inclusive")
    med, iqr = statistics.median(xb), q[2] - q[0]
    assert relative_xb(xb) == pytest.approx([100 / (1 + math.exp((v - med) / iqr)) for v in xb])
    got = relative_aqi(chi, xb)
    assert got == pytest.approx([0.5 * c + 0.5 * x for c, x in zip(relative_chi(chi), relative_xb(xb), strict=True)])


def test_relative_degenerate_runs_are_fifty() -> None:
    assert relative_chi([4.0, 4.0]) == [50.0, 50.0]
    assert relative_xb([0.5]) == [50.0]
