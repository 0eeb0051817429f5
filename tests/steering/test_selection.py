"""Candidate selection: every table entry against plain-HF hooks; filters and choice rule."""

from __future__ import annotations

import math

import pytest
import torch

from alignscope.errors import InputError
from alignscope.metrics import refusal_logodds_metric, refusal_token_ids
from alignscope.models.chat import encode_one, left_pad
from alignscope.steering.directions import diff_in_means
from alignscope.steering.interventions import ABLATION_COMPONENTS
from alignscope.steering.selection import SelectionConfig, select_direction
from tests.reference import load_plain
from tests.steering import plain

HARMFUL = ["do a bad thing", "hurt someone now", "steal it"]
HARMLESS = ["bake bread", "write a poem", "plan a trip please"]


def plain_last_logits(model, tok, texts, sites) -> torch.Tensor:
    ids, mask = left_pad([encode_one(tok, t, chat=False)[0] for t in texts], 3)
    with plain.edits(model, sites):
        return plain.plain_logits(model, ids, mask)[:, -1]


def test_table_matches_plain_reference(tiny_lm, tiny_dir) -> None:
    lm = tiny_lm("llama")
    model = load_plain(tiny_dir("llama"))
    md = diff_in_means(lm, HARMFUL, HARMLESS, positions="-2,-1", chat=False)
    cfg = SelectionConfig(kl_threshold=100.0, max_layer_frac=1.0, induce_min=-1e9, chat=False)
    sel = select_direction(lm, md, HARMFUL, HARMLESS, config=cfg)
    assert len(sel.rows) == 4 and all(r["filtered"] is None for r in sel.rows)
    metric = refusal_logodds_metric(refusal_token_ids(lm.tokenizer))
    base = plain_last_logits(model, lm.tokenizer, HARMLESS, [])
    for row in sel.rows:
        d = md.direction(row["layer"], row["position"])
        ablate = [(x, c, plain.project_out(d)) for x in range(lm.n_layers) for c in ABLATION_COMPONENTS]
        bypass = float(metric(plain_last_logits(model, lm.tokenizer, HARMFUL, ablate)[:, None]).mean())
        abl = plain_last_logits(model, lm.tokenizer, HARMLESS, ablate)
        kl = float((base.softmax(-1) * (base.log_softmax(-1) - abl.log_softmax(-1))).sum(-1).mean())
        induce = float(metric(plain_last_logits(model, lm.tokenizer, HARMLESS, [(row["layer"], "resid_pre", plain.add(d))])[:, None]).mean())
        assert math.isclose(row["bypass"], bypass, abs_tol=1e-4) and math.isclose(row["induce"], induce, abs_tol=1e-4)
        assert math.isclose(row["kl"], kl, abs_tol=1e-5)
    assert sel.chosen["bypass"] == min(r["bypass"] for r in sel.rows)
    torch.testing.assert_close(sel.direction, md.direction(sel.chosen["layer"], sel.chosen["position"]))
    grid = sel.heatmap("bypass")
    assert grid.shape == (2, 2) and not torch.isnan(grid).any()
    assert math.isclose(sel.baseline["harmful"], float(metric(plain_last_logits(model, lm.tokenizer, HARMFUL, [])[:, None]).mean()),
                        abs_tol=1e-4)


def test_filters(tiny_lm) -> None:
    lm = tiny_lm("llama")
    md = diff_in_means(lm, HARMFUL, HARMLESS, positions="last", chat=False)
    sel = select_direction(lm, md, HARMFUL, HARMLESS, config=SelectionConfig(kl_threshold=-1.0, max_layer_frac=0.5, chat=False))
    late = [r for r in sel.rows if r["layer"] == 1]
    assert late[0]["filtered"] == "late_layer" and math.isnan(late[0]["bypass"])
    early = [r for r in sel.rows if r["layer"] == 0]
    assert early[0]["filtered"] == "kl"  # every KL exceeds a negative threshold
    assert sel.chosen["layer"] == 0  # falls back to the scored candidates
    assert sel.to_json()["positions"] == [-1]


def test_induce_reference_rules(tiny_lm) -> None:
    """The induce filter compares with the chosen reference: harmful baseline, harmless baseline or 0."""
    lm = tiny_lm("llama")
    md = diff_in_means(lm, HARMFUL, HARMLESS, positions="-2,-1", chat=False)
    tables = {}
    for ref in ("harmful", "harmless", "absolute"):
        cfg = SelectionConfig(kl_threshold=100.0, max_layer_frac=1.0, induce_relative_to=ref, chat=False)
        sel = select_direction(lm, md, HARMFUL, HARMLESS, config=cfg)
        floor = 0.0 if ref == "absolute" else sel.baseline[ref]
        assert sel.baseline["induce_reference"] == floor
        for row in sel.rows:
            assert (row["filtered"] == "no_induce") == (row["induce"] <= floor)
        tables[ref] = [r["induce"] for r in sel.rows]
    assert tables["harmful"] == tables["harmless"] == tables["absolute"]  # only the filter differs
    with pytest.raises(InputError, match="induce_relative_to.*harmful|harmful.*induce_relative_to"):
        SelectionConfig(induce_relative_to="nope")
