"""Files written by the circuits commands: PNG heatmaps and curves, CSV summaries, JSON results, graphs.

Every file is written atomically. Layout of ``--out DIR``:

* ``patch``: ``{site}_{method}_effect.png`` (mean effect), ``summary.csv`` (one row per pair:
  metrics, peak layer/column, number of choice flips, Gini over layers, top-5 concentration),
  ``effects.json`` (every pair's full effect map), ``result.json`` (the ``--json`` payload);
  with ``--graph``: ``circuit.json``/``.html``/``.graphml``; with ``--edges``: ``circuit_edges.*``.
* ``trace``: ``trace_{kind}.png`` per kind (mean over prompts), ``trace_summary.csv`` (one row per
  prompt and kind), ``traces.json`` (every prompt's trace), ``result.json``.
* ``ablate``: ``ablation_curve.png``, ``ablation_curve.csv``, ``ablation_per_prompt.csv``,
  ``ranking.csv``, ``result.json``; with ``--graph``: ``circuit.*`` of the top components.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignscope.circuits.graph import graph_from_components, graph_from_edges, graph_from_patching
from alignscope.circuits.runner import AblationRun, PatchRun, TraceRun
from alignscope.io import atomic_write_json
from alignscope.reports.circuit_graph import write_graph
from alignscope.reports.plots import heatmap_png, lines_png
from alignscope.tables import write_csv


def _prompts(run: PatchRun | AblationRun) -> list[dict[str, Any]]:
    return [dict(e.pair.as_dict()) for e in run.pairs]


def write_patch_outputs(run: PatchRun, out: Path, *, graph: bool = False, top_k: int = 20) -> list[Path]:
    """Write the ``patch`` command's files; returns their paths."""
    mean = run.mean
    effect = mean.effect.sum(-1) if mean.effect.ndim == 3 else mean.effect
    cols = [f"H{h}" for h in range(effect.shape[1])] if mean.component == "head" else mean.tokens
    files = [heatmap_png(out / f"{mean.component}_{mean.method}_effect.png", effect.numpy(),
                         title=f"{mean.component} {mean.method} patching ({mean.direction}), {run.metric}",
                         xlabel="head" if mean.component == "head" else "position", ylabel="layer", xticklabels=cols,
                         colorbar_label="effect")]
    files.append(write_csv(out / "summary.csv", [s.to_json() for s in run.summaries]))
    per_pair = [{"pair": e.pair.as_dict(), **r.to_json()} for e, r in zip(run.pairs, run.results, strict=True)]
    atomic_write_json(out / "effects.json", {"model": run.model, "metric": run.metric, "pairs": per_pair})
    atomic_write_json(out / "result.json", {**mean.to_json(), "model": run.model, "metric": run.metric, "n_pairs": len(run.results)})
    files += [out / "effects.json", out / "result.json"]
    if graph:
        g = graph_from_patching(mean, model=run.model, metric=run.metric, prompts=_prompts(run), top_k=top_k)
        files += list(write_graph(g, out, stem="circuit").values())
    if run.edges is not None:
        g = graph_from_edges(run.edges, model=run.model, metric=run.metric, prompts=_prompts(run)[:1],
                             tokens=run.results[0].tokens, top_k=top_k)
        files += list(write_graph(g, out, stem="circuit_edges").values())
    return files


def write_trace_outputs(run: TraceRun, out: Path) -> list[Path]:
    """Write the ``trace`` command's files; returns their paths."""
    payload = run.mean_json()
    files = []
    for kind, eff in run.mean_effects().items():
        files.append(heatmap_png(out / f"trace_{kind}.png", eff.numpy(), title=f"causal tracing: {kind} ({payload['metric']})",
                                 xlabel="position", ylabel="layer", xticklabels=payload["tokens"], colorbar_label="indirect effect",
                                 center_zero=False))
    files.append(write_csv(out / "trace_summary.csv", [s.to_json() for s in run.summaries]))
    atomic_write_json(out / "traces.json", {"model": run.model, "prompts": [
        {"prompt": it.prompt, "subject": it.subject, "id": it.id, **r.to_json()} for it, r in zip(run.items, run.results, strict=True)]})
    atomic_write_json(out / "result.json", {**payload, "model": run.model})
    return [*files, out / "traces.json", out / "result.json"]


def write_ablation_outputs(run: AblationRun, out: Path, *, graph: bool = False) -> list[Path]:
    """Write the ``ablate`` command's files; returns their paths."""
    res = run.result
    ks = [p["k"] for p in res.curve]
    files = [lines_png(out / "ablation_curve.png", {"retained fraction of the behaviour": [p["retained_mean"] for p in res.curve]},
                       x=ks, title=f"cumulative {res.method} ablation of the top {run.site} components (95% CI)",
                       xlabel="components ablated (k)", ylabel="retained (metric - corrupt) / (clean - corrupt)",
                       bands={"retained fraction of the behaviour": ([p["retained_ci95"][0] for p in res.curve],
                                                                     [p["retained_ci95"][1] for p in res.curve])})]
    files.append(write_csv(out / "ablation_curve.csv", [{**{k: v for k, v in p.items() if not k.endswith("ci95")},
                                                         "metric_lo": p["metric_ci95"][0], "metric_hi": p["metric_ci95"][1],
                                                         "retained_lo": p["retained_ci95"][0], "retained_hi": p["retained_ci95"][1]}
                                                        for p in res.curve]))
    rows = []
    for i, enc in enumerate(run.pairs):
        row: dict[str, Any] = {"id": enc.pair.id or str(i + 1), "clean": enc.pair.clean, "clean_metric": res.clean_metrics[i],
                               "corrupt_metric": res.corrupt_metrics[i]}
        row.update({f"k{k}": float(res.per_prompt[i, k]) for k in ks})
        rows.append(row)
    files.append(write_csv(out / "ablation_per_prompt.csv", rows))
    files.append(write_csv(out / "ranking.csv", [{"rank": r + 1, "component": c.label, "score": s} for r, (c, s) in enumerate(run.ranked)]))
    atomic_write_json(out / "result.json", {**run.to_json(), "model": run.model})
    files.append(out / "result.json")
    if graph:
        g = graph_from_components(run.ranked, site=run.site, model=run.model, metric="logit_diff(answer - foil)", prompts=_prompts(run),
                                  tokens=[], clean_metric=sum(res.clean_metrics) / len(res.clean_metrics),
                                  corrupt_metric=sum(res.corrupt_metrics) / len(res.corrupt_metrics), top_k=max(len(res.components), 10))
        files += list(write_graph(g, out, stem="circuit").values())
    return files
