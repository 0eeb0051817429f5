"""The whole run with the real steering search (selection + conditional steering) on a tiny model."""

from __future__ import annotations

import json
import math
from pathlib import Path

from alignscope.evals.study import StudyResults
from alignscope.pipeline.config import load_config
from alignscope.pipeline.runner import run_pipeline
from alignscope.steering.intervention_io import load_intervention


def test_real_steering_run_on_tiny_model(tiny_config, tmp_path: Path) -> None:
    cfg = load_config(tiny_config(intervene={"folds": 2, "n_vector_prompts": 4, "max_new_tokens": 3, "coefficients": [0.5, 1.0]},
                                  select={"layer_stride": 1}, evaluate={"max_new_tokens": 3, "compare": ["addition", "ablation"]}))
    out = tmp_path / "run"
    result = run_pipeline(cfg, out, progress=False)
    res = result.results
    sel = res.selection
    # 2 layers: layer 1 >= 0.8 * 2 is false, so every candidate is scored; the choice is the lowest bypass
    # among unfiltered rows (or among all scored rows when a random tiny model leaves none unfiltered;
    # an unscored bypass is null in the results)
    assert {r["layer"] for r in sel.table} == {0, 1} and all(r["filtered"] != "late_layer" for r in sel.table)
    pool = [r for r in sel.table if r["filtered"] is None] or [r for r in sel.table if r["bypass"] is not None]
    assert sel.best is not None and sel.best["bypass"] == min(r["bypass"] for r in pool)
    assert len(sel.grids) == 3 and len(sel.grids[0].values) == 2  # layers x positions
    iv = load_intervention(out / "intervention.safetensors")
    assert iv.kind == "conditional" and res.intervention.kind == "conditional"
    assert set(res.comparisons) == {"addition", "ablation"}
    counts = [{g: r.n for g, r in ev.by_label.items()} for ev in (res.after, res.baseline, res.comparisons["ablation"])]
    assert counts[0] == counts[1] == counts[2]
    assert res.kl.mean is not None and math.isfinite(res.kl.mean)
    html = (out / "report.html").read_text()
    assert "Direction selection" in html and "Intervention search" in html and "Where the gate fired" in html
    # gate rates: counts agree with the per-prompt records, which agree with the saved intervention's probe
    gens = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert all(isinstance(g["gate"], bool) and (g["probe_score"] > iv.threshold) == g["gate"] for g in gens)
    assert res.gate is not None
    for label, g in res.gate.by_label.items():
        rows = [r for r in gens if r["label"] == label or (label == "lookalike" and r["category"] == "lookalike")]
        assert g.gate.n == len(rows) and g.gate.k == sum(r["gate"] for r in rows)
        assert g.refused_when_gated.k == sum(r["gate"] and r["refused_after"] for r in rows)
        assert g.refused_when_not_gated.k == sum(not r["gate"] and r["refused_after"] for r in rows)
    text = (out / "results.json").read_text()
    saved = json.loads(text)
    assert saved["timings"]["report"]["seconds"] >= 0 and not any(v["reused"] for v in saved["timings"].values())
    # every optional part is present here (gate, comparisons, params, search_seconds, sort_ascending): the file
    # reads back into the same object and writes back byte for byte
    reloaded = StudyResults.from_json(saved, out / "results.json")
    assert reloaded == res and json.dumps(reloaded.to_json(), indent=2) + "\n" == text
