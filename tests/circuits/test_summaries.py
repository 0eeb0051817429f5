"""The circuits runners' per-item summaries: typed rows whose to_json() is the dict the runners used to build."""

from __future__ import annotations

import json
from typing import Any

import torch

from alignscope.circuits.summaries import EffectSummary, PairSummary, TraceSummary, effect_summary

EFFECT = EffectSummary(peak_layer=1, peak_col=2, peak_label="c", peak_effect=6.0, n_flips=1, n_patches=6, gini_layers=0.4,
                       top5_concentration=1.0)


def old_effect_dict() -> dict[str, Any]:
    """effect_summary's former dict for the map below, written out by hand."""
    return {"peak_layer": 1, "peak_col": 2, "peak_label": "c", "peak_effect": 6.0, "n_flips": 1, "n_patches": 6,
            "gini_layers": 0.4, "top5_concentration": 1.0}


def test_effect_summary_to_json_is_the_old_flat_dict() -> None:
    s = effect_summary(torch.tensor([[1.0, 0.0, 0.0], [0.0, -3.0, 6.0]]), target_metric=-2.0, labels=["a", "b", "c"])
    got = s.to_json()
    assert list(got) == list(old_effect_dict())
    assert {k: v for k, v in got.items() if k != "gini_layers"} == {k: v for k, v in old_effect_dict().items() if k != "gini_layers"}
    assert abs(got["gini_layers"] - 0.4) < 1e-12


def test_pair_summary_row_is_the_old_dict() -> None:
    s = PairSummary("a", "clean text", "corrupt text", "x", "y", 2.5, -1.25, EFFECT, 0.75)
    # The row run_patch used to build: pair fields, metrics, **effect_summary, seconds.
    old = {"id": "a", "clean": "clean text", "corrupt": "corrupt text", "answer": "x", "foil": "y", "clean_metric": 2.5,
           "corrupt_metric": -1.25, **old_effect_dict(), "seconds": 0.75}
    assert json.dumps(s.to_json()) == json.dumps(old)


def test_trace_summary_row_is_the_old_dict_with_no_flips_for_a_probability() -> None:
    s = TraceSummary("1", "The Eiffel Tower is in", "Eiffel Tower", "mlp", " Paris", "prob", 0.5, 0.125,
                     EffectSummary(3, 4, " Tower", 0.25, None, 40, 0.5, 0.75), 1.5)
    old = {"id": "1", "prompt": "The Eiffel Tower is in", "subject": "Eiffel Tower", "kind": "mlp", "answer": " Paris",
           "metric": "prob", "clean_metric": 0.5, "corrupt_metric": 0.125, "peak_layer": 3, "peak_col": 4, "peak_label": " Tower",
           "peak_effect": 0.25, "n_flips": None, "n_patches": 40, "gini_layers": 0.5, "top5_concentration": 0.75, "seconds": 1.5}
    assert json.dumps(s.to_json()) == json.dumps(old)
