"""The AQI's bootstrap interval against an explicit resampling loop, monotonicity on Gaussians, and result.json's reader."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alignscope.errors import InputError
from alignscope.geometry.aqi import AQIResult, AxiomAQI, LayerAQI, bootstrap_aqi


def aqi_of(a: np.ndarray, b: np.ndarray) -> float:
    x = np.concatenate([a, b])
    ca, cb = a.mean(0), b.mean(0)
    within = ((a - ca) ** 2).sum() + ((b - cb) ** 2).sum()
    sep = ((ca - cb) ** 2).sum()
    between = len(a) * ((ca - x.mean(0)) ** 2).sum() + len(b) * ((cb - x.mean(0)) ** 2).sum()
    chi, xb = between / (within / (len(x) - 2)), within / (len(x) * sep)
    return 0.5 * 100 * (1 - math.exp(-(chi / (len(x) - 2)) / 0.25)) + 0.5 * 100 / (1 + xb)


def test_bootstrap_interval_equals_an_explicit_resampling_loop() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(9, 4)), rng.normal(size=(11, 4)) + 2.0
    draw = np.random.default_rng(5)
    wa = draw.multinomial(len(a), np.full(len(a), 1 / len(a)), size=40)
    wb = draw.multinomial(len(b), np.full(len(b), 1 / len(b)), size=40)
    values = [aqi_of(np.repeat(a, ra, axis=0), np.repeat(b, rb, axis=0)) for ra, rb in zip(wa, wb, strict=True)]
    point = aqi_of(a, b)
    q_lo, q_hi = np.percentile(values, [2.5, 97.5])
    expected = (min(100.0, max(0.0, 2 * point - q_hi)), min(100.0, max(0.0, 2 * point - q_lo)))  # the basic interval, clipped to 0-100
    assert bootstrap_aqi(a, b, n_boot=40, seed=5) == pytest.approx(expected, rel=1e-9)
    assert 0.0 < expected[0] < expected[1]
    assert bootstrap_aqi(a, b, n_boot=0, seed=5) == pytest.approx((point, point), rel=1e-9)


def test_aqi_rises_with_separation() -> None:
    rng = np.random.default_rng(0)
    noise_a, noise_b = rng.normal(size=(50, 8)), rng.normal(size=(50, 8))
    direction = np.eye(8)[0]
    values = [aqi_of(noise_a, noise_b + s * direction) for s in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)]
    assert values == sorted(values) and values[-1] > 90 > 50 > values[0]


def result() -> AQIResult:
    return AQIResult(aqi=40.0, aqi_relative=55.5, chi=3.0, xb=0.5, davies_bouldin=2.0, dunn=0.1, ci95=(30.0, 50.0),
                     n={"safe": 4, "unsafe": 5}, layer=3, per_layer=(LayerAQI(0, 10.0, 1.0, 2.0, (5.0, 15.0)),),
                     per_axiom={"a": AxiomAQI(41.0, 60.0, (1.0, 2.0), {"safe": 4, "unsafe": 5}, 3.0, 0.4)}, model="m", data="d",
                     settings={"pool": "mean"}, layer_weights=None, seconds=1.5)


def test_result_json_round_trips_and_names_bad_fields() -> None:
    r = result()
    assert AQIResult.from_json(r.to_json()) == r
    bad = r.to_json()
    bad["per_layer"][0]["chi"] = "x"
    with pytest.raises(InputError, match="field 'per_layer.0.chi'") as exc:
        AQIResult.from_json(bad, "result.json")
    assert exc.value.path == "result.json"
    bad = r.to_json()
    del bad["per_axiom"]["a"]["n"]["unsafe"]
    with pytest.raises(InputError, match="per_axiom.a.n.unsafe"):
        AQIResult.from_json(bad)
    bad = r.to_json()
    bad["layer"] = "middle"
    with pytest.raises(InputError, match="'learned'"):
        AQIResult.from_json(bad)
