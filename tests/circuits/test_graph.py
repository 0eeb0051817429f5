from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import torch

from alignscope.circuits.graph import SCHEMA, graph_from_patching
from alignscope.circuits.patching import PatchingResult
from alignscope.circuits.summaries import effect_summary
from alignscope.reports.circuit_graph import write_graph

EVIL = "<script>alert(1)</script>"


def _result() -> PatchingResult:
    effect = torch.tensor([[0.0, 4.0, -1.0], [2.0, 0.5, -6.0]])
    return PatchingResult("attn_out", "denoise", effect, 3.0, -2.0, ["a", EVIL, "c"], 0.1)


def test_graph_schema_ranking_and_exports(tmp_path: Path) -> None:
    prompts = [{"clean": EVIL, "corrupt": "x", "answer": "y", "foil": "z", "id": None}]
    g = graph_from_patching(_result(), model="m", metric="logit_diff", prompts=prompts, top_k=3)
    assert g["schema"] == SCHEMA and g["n_candidates"] == 6 and g["edges"] == []
    assert [(n["id"], n["score"], n["rank"]) for n in g["nodes"]] == [
        ("attn_out@L1.P2", -6.0, 1), ("attn_out@L0.P1", 4.0, 2), ("attn_out@L1.P0", 2.0, 3)]
    assert g["nodes"][1]["token"] == EVIL and g["nodes"][1]["position"] == 1 and g["nodes"][1]["head"] is None
    paths = write_graph(g, tmp_path)
    assert json.loads(paths["json"].read_text()) == g
    html = paths["html"].read_text()
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    back = nx.read_graphml(paths["graphml"])
    assert set(back.nodes) == {n["id"] for n in g["nodes"]} and back.nodes["attn_out@L1.P2"]["score"] == -6.0


def test_effect_summary_by_hand() -> None:
    e = torch.tensor([[1.0, 0.0, 0.0], [0.0, -3.0, 6.0]])
    s = effect_summary(e, target_metric=-2.0, labels=["a", "b", "c"])
    # peak |effect| 6 at layer 1, col 2; flips: -2 + e > 0 only for 6.0.
    assert (s.peak_layer, s.peak_col, s.peak_label, s.peak_effect, s.n_flips) == (1, 2, "c", 6.0, 1)
    # per-layer |effect| totals [1, 9]: Gini of two values = |9 - 1| / (2 * 2 * mean 5) = 0.4.
    assert abs(s.gini_layers - 0.4) < 1e-12
    assert s.top5_concentration == 1.0 and s.n_patches == 6
