"""Files of the refusal-circuit study: ``results.json``, CSVs, PNGs and one self-contained ``report.html``.

The dashboard holds the patching heatmaps (layer x component, layer x head), layer importance,
the circuit diagram (top components as nodes, edges scored by edge attribution as ``patch
--edges`` scores them), the cumulative ablation curve with intervals against the random
baseline, and escaped example generations before and after ablation.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alignscope.io import atomic_write_json
from alignscope.reports.html import Page
from alignscope.reports.plots import heatmap_png, lines_png, pyplot, save_figure
from alignscope.tables import write_csv

LAYER_KINDS = ("resid_pre", "attn_out", "mlp_out")


def effect_maps(results: Mapping[str, Any], effects: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean effect per (layer, kind) for :data:`LAYER_KINDS` and per (layer, head); NaN where not patched."""
    n_layers, n_heads = results["model"]["n_layers"], results["model"]["n_heads"]
    mean = effects.double().mean(0).numpy()
    kinds = np.full((n_layers, len(LAYER_KINDS)), np.nan)
    heads = np.full((n_layers, n_heads), np.nan)
    for i, label in enumerate(results["patching"]["components"]):
        comp, _, rest = label.partition("@L")
        layer_txt, _, head_txt = rest.partition(".H")
        if comp == "head":
            heads[int(layer_txt), int(head_txt)] = mean[i]
        elif comp in LAYER_KINDS:
            kinds[int(layer_txt), LAYER_KINDS.index(comp)] = mean[i]
    return kinds, heads


def _ablation_png(path: Path, curve: list[dict[str, Any]], reference: Mapping[str, Any]) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ks = [r["k"] for r in curve]
    top = np.array([r["refusal_rate"] for r in curve])
    ax.errorbar(ks, top, yerr=[top - [r["ci95"][0] for r in curve], [r["ci95"][1] for r in curve] - top], marker="o", capsize=3,
                label="top-k components ablated")
    rnd = np.array([r["random_mean"] for r in curve])
    ax.errorbar(ks, rnd, yerr=[rnd - [r["random_ci95"][0] for r in curve], [r["random_ci95"][1] for r in curve] - rnd], marker="s",
                capsize=3, label="random sets of the same kinds")
    for name, style in (("with_intervention", "--"), ("without_intervention", ":")):
        if name in reference:
            ax.axhline(reference[name]["refusal_rate"], linestyle=style, color="gray", label=f"no ablation ({name.replace('_', ' ')})")
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("k (components ablated)")
    ax.set_ylabel("held-out harmful refusal rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, plt, path)


def _diagram(results: Mapping[str, Any]) -> dict[str, Any]:
    """A plotly figure: top components at (kind/head, layer), edges between them."""
    nodes = results["top_components"]
    edges = results.get("edges", {}).get("edges", [])
    n_heads = results["model"]["n_heads"]

    def xy(row: Mapping[str, Any]) -> tuple[float, float]:
        kind = row["kind"]
        x = {"attn_out": -2.0, "mlp_out": float(n_heads) + 1.0}.get(kind, float(row["head"] if row["head"] is not None else 0))
        return x, float(row["layer"]) + (0.5 if kind == "mlp_out" else 0.0)

    pos = {r["component"]: xy(r) for r in nodes}
    emax = max((abs(e["score"]) for e in edges), default=1.0) or 1.0
    traces: list[dict[str, Any]] = []
    for e in edges:
        if e["source"] in pos and e["target"] in pos:
            (x0, y0), (x1, y1) = pos[e["source"]], pos[e["target"]]
            traces.append({"type": "scatter", "mode": "lines", "x": [x0, x1], "y": [y0, y1], "hoverinfo": "skip", "showlegend": False,
                           "line": {"width": 0.5 + 6 * abs(e["score"]) / emax, "color": "#d6604d" if e["score"] > 0 else "#4393c3"},
                           "opacity": 0.6})
    vmax = max((abs(r["effect"]) for r in nodes), default=1.0) or 1.0
    traces.append({"type": "scatter", "mode": "markers+text", "x": [pos[r["component"]][0] for r in nodes],
                   "y": [pos[r["component"]][1] for r in nodes], "text": [r["component"] for r in nodes], "textposition": "top center",
                   "hovertext": [f"{r['component']} effect={r['effect']:.3g} causal={r['causal_fraction']:.2f}" for r in nodes],
                   "hoverinfo": "text", "showlegend": False,
                   "marker": {"size": [10 + 30 * abs(r["effect"]) / vmax for r in nodes], "color": [r["effect"] for r in nodes],
                              "colorscale": "RdBu", "reversescale": True, "cmin": -vmax, "cmax": vmax}})
    return {"data": traces, "layout": {"height": 650, "xaxis": {"title": {"text": "attn_out | head | mlp_out"}},
                                       "yaxis": {"title": {"text": "layer"}}, "title": {"text": "refusal circuit (top components)"}}}


def write_circuit_report(results: Mapping[str, Any], tensors: Mapping[str, Mapping[str, torch.Tensor]], out: Path) -> dict[str, Path]:
    """Write every file of the study; returns name -> path."""
    paths: dict[str, Path] = {"results.json": out / "results.json"}
    atomic_write_json(paths["results.json"], dict(results))
    cols = ["component", "kind", "layer", "head", "effect", "ci_low", "ci_high", "causal_fraction"]
    for name, rows in (("top_components.csv", results["top_components"]), ("ranked_components.csv", results["ranked"])):
        paths[name] = write_csv(out / name, ({**{k: r[k] for k in cols if k in r}, "ci_low": r["ci95"][0], "ci_high": r["ci95"][1]}
                                             for r in rows), cols)
    paths["layer_importance.csv"] = write_csv(out / "layer_importance.csv",
                                              ({"layer": i, "importance": v} for i, v in enumerate(results["layer_importance"])))
    curve = results["ablation"]["curve"]
    paths["ablation.csv"] = write_csv(out / "ablation.csv", ({"k": r["k"], "n": r["n"], "refusal_rate": r["refusal_rate"], "ci_low": r["ci95"][0],
                                                              "ci_high": r["ci95"][1], "random_mean": r["random_mean"],
                                                              "random_ci_low": r["random_ci95"][0], "random_ci_high": r["random_ci95"][1],
                                                              "p_value": r["p_value"], "kl_harmless": r["kl_harmless"]} for r in curve))
    paths["baseline.csv"] = write_csv(out / "baseline.csv", ({"group": g, "n": v["n"], "refusal_rate": v["refusal_rate"], "ci_low": v["ci95"][0],
                                                              "ci_high": v["ci95"][1]}
                                                             for g, v in {**results["baseline"]["by_label"],
                                                                          **results["baseline"]["by_category"]}.items()))
    pngs: dict[str, Path] = {}
    for direction in results["patching"]["directions"]:
        kinds, heads = effect_maps(results, tensors["patching"][f"effects_{direction}"])
        name = f"patching_{direction}_layers.png"
        pngs[name] = heatmap_png(out / name, kinds, title=f"{direction}: layer x component", xlabel="component", ylabel="layer",
                                 xticklabels=list(LAYER_KINDS), colorbar_label="refusal log-odds change")
        name = f"patching_{direction}_heads.png"
        pngs[name] = heatmap_png(out / name, heads, title=f"{direction}: layer x head", xlabel="head", ylabel="layer",
                                 colorbar_label="refusal log-odds change")
    pngs["layer_importance.png"] = lines_png(out / "layer_importance.png", {"sum of mean effects": results["layer_importance"]},
                                             title="layer importance", xlabel="layer", ylabel="summed effect")
    pngs["ablation_curve.png"] = _ablation_png(out / "ablation_curve.png", curve, results["ablation"]["reference"])
    paths.update(pngs)
    paths["report.html"] = _page(results, pngs).write(out / "report.html")
    return paths


def _page(results: Mapping[str, Any], pngs: Mapping[str, Path]) -> Page:
    m = results["model"]
    page = Page(f"Refusal circuit: {m['name']}", subtitle=f"{m['n_layers']} layers, {m['n_heads']} heads; intervention: "
                f"{results['intervention'] or 'none'}; metric: {results['patching']['metric']}")
    page.add_heading("Baseline refusal (generation)")
    page.add_table(["group", "n", "refusal rate", "95% CI"], [[g, v["n"], v["refusal_rate"], f"{v['ci95'][0]:.3f}-{v['ci95'][1]:.3f}"]
                                                             for g, v in {**results["baseline"]["by_label"],
                                                                          **results["baseline"]["by_category"]}.items()])
    page.add_heading("Pairs")
    p = results["pairs"]
    page.add_text(f"{p['n']} pairs over {p['n_categories']} categories ({p['n_rank']} ranking, {p['n_heldout']} held out; "
                  f"{p['n_same_length']} of equal token length). Note: {p['note']}.")
    page.add_heading("Patching heatmaps")
    for name, path in pngs.items():
        if name.startswith("patching_"):
            page.add_image(path, alt=name)
    page.add_heading("Top components")
    page.add_text(f"ranked by the {results['rank_direction']} effect; the first ranks first in {100 * results['first_place_rate']:.1f}% "
                  "of bootstrap resamples of the pairs")
    page.add_table(["component", "effect", "95% CI", "causal fraction"],
                   [[r["component"], r["effect"], f"{r['ci95'][0]:.3g}..{r['ci95'][1]:.3g}", r["causal_fraction"]]
                    for r in results["top_components"]])
    page.add_heading("Layer importance")
    page.add_image(pngs["layer_importance.png"], alt="layer importance")
    page.add_heading("Circuit diagram")
    page.add_figure(_diagram(results))
    if not results.get("edges", {}).get("edges"):
        page.add_text("no edges: edge attribution needs pairs of equal token length", muted=True)
    page.add_heading("Ablation in generation (held-out harmful prompts)")
    page.add_image(pngs["ablation_curve.png"], alt="ablation curve")
    page.add_table(["k", "n", "refusal rate", "95% CI", "random mean", "random 95%", "p", "harmless KL"],
                   [[r["k"], r["n"], r["refusal_rate"], f"{r['ci95'][0]:.3f}-{r['ci95'][1]:.3f}", r["random_mean"],
                     f"{r['random_ci95'][0]:.3f}-{r['random_ci95'][1]:.3f}", r["p_value"], r["kl_harmless"]] for r in results["ablation"]["curve"]])
    page.add_heading("Example generations before and after ablation")
    ab = results["ablation"]
    last = ab["examples"][-1] if ab["examples"] else None
    n = results["config"]["report"]["n_examples"]
    for i, prompt in enumerate(ab["prompts"][:n]):
        page.add_text(prompt)
        page.add_pre(f"before: {ab['baseline_generations'][i]}")
        if last is not None:
            page.add_pre(f"after (top {last['k']} ablated): {last['generations'][i]}")
    return page
