"""The refusal-study report: ``report.html`` (self-contained, interactive plotly) and PNG plots.

Everything is drawn from the run's ``results.json`` dict (see
:mod:`alignscope.pipeline.runner` for its schema), so a report can be rebuilt from a finished
run without the model. Every text that comes from data (prompts, generations, category names)
is escaped by :class:`~alignscope.reports.html.Page`.

Example:
    >>> paths = build_refusal_report(results, "out/run")   # doctest: +SKIP
    >>> paths["report.html"]                                # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from alignscope.reports.html import Page
from alignscope.reports.plots import heatmap_png, lines_png, rate_bars_png

CONDITIONS = (("baseline", "before"), ("after", "after"))


def _num(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _triple(rate: Any, ci: Sequence[Any]) -> tuple[float, float, float]:
    return (_num(rate), _num(ci[0]), _num(ci[1]))


def rate_triples(payload: Mapping[str, Any], by: str = "label") -> dict[str, tuple[float, float, float]]:
    """``{group: (rate, lo, hi)}`` from an eval payload, per label or per category."""
    if by == "label":
        return {k: _triple(payload["refusal_rate"][k], payload["ci95"][k]) for k in payload["refusal_rate"]}
    return {k: _triple(v["refusal_rate"], v["ci95"]) for k, v in payload["by_category"].items()}


def _group(payload: Mapping[str, Any], by: str, group: str) -> tuple[Any, Any, Any]:
    """``(n, rate, ci95)`` of one label or category (Nones when absent)."""
    if by == "label":
        return payload["n"].get(group), payload["refusal_rate"].get(group), payload["ci95"].get(group)
    row = payload["by_category"].get(group, {})
    return row.get("n"), row.get("refusal_rate"), row.get("ci95")


def rate_rows(results: Mapping[str, Any], by: str) -> list[list[Any]]:
    """Table rows ``group, n, before, CI, after, CI`` for labels or categories."""
    before, after = results["baseline"], results["after"]
    rows = []
    for g in before["n"] if by == "label" else before["by_category"]:
        n, b_rate, b_ci = _group(before, by, g)
        _, a_rate, a_ci = _group(after, by, g)
        rows.append([g, n, _pct(b_rate), _ci(b_ci), _pct(a_rate), _ci(a_ci)])
    return rows


def _pct(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * float(x):.1f}%"


def _ci(ci: Sequence[float] | None) -> str:
    return "n/a" if not ci else f"[{100 * ci[0]:.1f}%, {100 * ci[1]:.1f}%]"


def _bar_figure(results: Mapping[str, Any], by: str, title: str) -> dict[str, Any]:
    data = []
    for key, name in CONDITIONS:
        triples = rate_triples(results[key], by)
        groups = list(triples)
        data.append({"type": "bar", "name": name, "x": groups, "y": [t[0] for t in triples.values()],
                     "error_y": {"type": "data", "symmetric": False, "array": [t[2] - t[0] for t in triples.values()],
                                 "arrayminus": [t[0] - t[1] for t in triples.values()]},
                     "customdata": [results[key]["n"].get(g) if by == "label" else results[key]["by_category"][g]["n"] for g in groups],
                     "hovertemplate": "%{x}: %{y:.1%} (n=%{customdata})<extra>" + name + "</extra>"})
    return {"data": data, "layout": {"title": {"text": title}, "barmode": "group", "yaxis": {"range": [0, 1.05], "tickformat": ".0%"},
                                     "height": 420}}


def _heatmap_figure(grid: Mapping[str, Any]) -> dict[str, Any]:
    z = [[None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in row] for row in grid["values"]]
    return {"data": [{"type": "heatmap", "z": z, "x": [str(p) for p in grid["positions"]], "y": [str(layer) for layer in grid["layers"]],
                      "colorscale": "RdBu", "reversescale": True, "colorbar": {"title": {"text": grid.get("key", "score")}},
                      "hovertemplate": "layer %{y}, position %{x}: %{z:.3f}<extra></extra>"}],
            "layout": {"title": {"text": f"{grid.get('name', 'score')} (blank: not scored)"},
                       "xaxis": {"title": {"text": "position (offset from end)"}}, "yaxis": {"title": {"text": "layer"}}, "height": 520}}


def _lines_figure(x: Sequence[int], series: Mapping[str, Sequence[float]], title: str, ytitle: str) -> dict[str, Any]:
    return {"data": [{"type": "scatter", "mode": "lines+markers", "name": k, "x": list(x), "y": list(v)} for k, v in series.items()],
            "layout": {"title": {"text": title}, "xaxis": {"title": {"text": "layer"}}, "yaxis": {"title": {"text": ytitle}}, "height": 380}}


def category_bars_png(path: Path, groups: Mapping[str, Mapping[str, tuple[float, float, float]]], *, title: str) -> Path:
    """Horizontal grouped bars (one row per category, in first-seen order) with interval whiskers."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    cats = list(dict.fromkeys(c for g in groups.values() for c in g))
    height = 0.8 / max(1, len(groups))
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.32 * len(cats) + 1.2)))
    for i, (cond, triples) in enumerate(groups.items()):
        vals = np.array([triples.get(c, (np.nan,) * 3) for c in cats], dtype=float)
        ys = np.arange(len(cats)) + i * height
        err = np.array([vals[:, 0] - vals[:, 1], vals[:, 2] - vals[:, 0]])
        ax.barh(ys, vals[:, 0], height=height, xerr=err, capsize=2, label=cond)
    ax.set_yticks(np.arange(len(cats)) + height * (len(groups) - 1) / 2)
    ax.set_yticklabels(cats, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("refusal rate")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path


def write_pngs(results: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """The static plots: rates before/after (labels, categories), candidate heatmap, direction curves."""
    paths: dict[str, Path] = {}
    paths["rates.png"] = rate_bars_png(out_dir / "rates.png", {name: rate_triples(results[key]) for key, name in CONDITIONS},
                                       title="Refusal rate on the test split (95% Wilson CI)")
    paths["rates_by_category.png"] = category_bars_png(out_dir / "rates_by_category.png",
                                                       {name: rate_triples(results[key], "category") for key, name in CONDITIONS},
                                                       title="Refusal rate by category (test split, 95% Wilson CI)")
    for i, grid in enumerate(results.get("selection", {}).get("grids") or []):
        name = "candidates.png" if i == 0 else f"candidates_{grid.get('key', i)}.png"
        paths[name] = heatmap_png(out_dir / name, [[_num(v) for v in row] for row in grid["values"]],
                                  title=f"Candidates: {grid.get('key', 'score')}", xlabel="position (offset from end)", ylabel="layer",
                                  xticklabels=[str(p) for p in grid["positions"]], yticklabels=[str(x) for x in grid["layers"]],
                                  center_zero=grid.get("key") != "kl", colorbar_label=grid.get("key", ""))
    curves = results.get("directions", {}).get("curves")
    if curves:
        paths["directions.png"] = lines_png(out_dir / "directions.png", {"norm": curves["norm"]}, x=curves["layers"],
                                            title="Difference-in-means norm per layer", xlabel="layer", ylabel="norm")
        paths["cosine.png"] = lines_png(out_dir / "cosine.png", {k: v for k, v in curves.items() if k.startswith("cosine")},
                                        x=curves["layers"], title="Cosine similarity per layer", xlabel="layer", ylabel="cosine")
    return paths


def build_refusal_report(results: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.html`` and the PNG plots under ``out_dir``; returns name -> path."""
    out = Path(out_dir)
    paths = write_pngs(results, out)
    page = Page(f"alignscope refusal study: {results['model']['name']}",
                subtitle=f"{results['model'].get('n_layers')} layers, d_model {results['model'].get('d_model')}; "
                         f"rates on the held-out test split (never used to choose anything); run took {results.get('seconds', 0):.0f} s")
    _summary_section(page, results)
    _rates_section(page, results)
    _selection_section(page, results)
    _directions_section(page, results)
    _intervention_section(page, results)
    _examples_section(page, results)
    paths["report.html"] = page.write(out / "report.html")
    return paths


def _summary_section(page: Page, results: Mapping[str, Any]) -> None:
    page.add_heading("Summary")
    page.add_table(["label", "n", "refusal before", "95% CI", "refusal after", "95% CI"], rate_rows(results, "label"),
                   caption="Refusal rate per label (test split)")
    kl = results.get("kl")
    if kl:
        page.add_text(f"First-token KL(unsteered || steered) on {kl['n']} harmless test prompts: mean {kl['mean']:.4f} nats "
                      f"(95% CI {kl['ci95'][0]:.4f} to {kl['ci95'][1]:.4f}), max {kl['max']:.4f}.")
    iv = results.get("intervention", {})
    if iv:
        page.add_text(f"Intervention: {iv.get('kind')} saved to {iv.get('file')}; {iv.get('description', '')}")


def _rates_section(page: Page, results: Mapping[str, Any]) -> None:
    page.add_heading("Refusal rates before and after")
    page.add_figure(_bar_figure(results, "label", "Refusal rate per label (95% Wilson CI)"))
    page.add_figure(_bar_figure(results, "category", "Refusal rate per category (95% Wilson CI)"))
    page.add_table(["category", "n", "before", "95% CI", "after", "95% CI"], rate_rows(results, "category"))
    for name, payload in results.get("comparisons", {}).items():
        rows = [[k, payload["n"][k], _pct(payload["refusal_rate"][k]), _ci(payload["ci95"][k])] for k in payload["n"]]
        page.add_table(["label", "n", "refusal", "95% CI"], rows, caption=f"Comparison: {name}")


def _selection_section(page: Page, results: Mapping[str, Any]) -> None:
    sel = results.get("selection")
    if not sel:
        return
    page.add_heading("Direction selection (validation split)")
    if sel.get("best"):
        page.add_text("Chosen candidate: " + ", ".join(f"{k}={_fmt_cell(v)}" for k, v in sel["best"].items()))
    for grid in sel.get("grids") or []:
        page.add_figure(_heatmap_figure(grid))
    table = sel.get("table") or []
    if table:
        cols = list(table[0])
        sign = 1.0 if sel.get("sort_ascending") else -1.0
        key = sel.get("sort_key", "")
        top = sorted(table, key=lambda r: (bool(r.get("filtered")), sign * _sortable(r.get(key), sign)))[:15]
        page.add_table(cols, [[r.get(c) for c in cols] for r in top],
                       caption=f"Best candidates by {key} ({len(table)} in total; the full table is in results.json)")


def _sortable(value: Any, sign: float = -1.0) -> float:
    """A float key that puts missing/NaN values last whichever way the table is sorted."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return sign * float("inf")
    return v if math.isfinite(v) else sign * float("inf")


def _fmt_cell(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _directions_section(page: Page, results: Mapping[str, Any]) -> None:
    curves = results.get("directions", {}).get("curves")
    if not curves:
        return
    page.add_heading("Directions per layer")
    page.add_figure(_lines_figure(curves["layers"], {"norm": curves["norm"]}, "Difference-in-means norm per layer", "norm"))
    page.add_figure(_lines_figure(curves["layers"], {k: v for k, v in curves.items() if k.startswith("cosine")},
                                  "Cosine similarity per layer", "cosine"))


def _intervention_section(page: Page, results: Mapping[str, Any]) -> None:
    iv = results.get("intervention", {})
    search = iv.get("search") or {}
    if not search and not iv.get("params"):
        return
    gate = results.get("gate")
    if gate and gate.get("by_label"):
        page.add_heading("Where the gate fired (test split)")
        rows = []
        for name, g in gate["by_label"].items():
            rows.append([name, g["gate"]["n"], _pct(g["gate"]["rate"]), _ci(g["gate"]["ci95"]),
                         f"{g['refused_when_gated']['k']}/{g['refused_when_gated']['n']}",
                         f"{g['refused_when_not_gated']['k']}/{g['refused_when_not_gated']['n']}"])
        page.add_table(["label", "n", "gate fired", "95% CI", "refused when gated", "refused when not gated"], rows,
                       caption=f"probe threshold {_fmt_cell(gate.get('threshold'))}")
    page.add_heading("Intervention search (train and validation splits only)")
    if iv.get("params"):
        page.add_table(["parameter", "value"], [[k, v] for k, v in iv["params"].items()], caption="Chosen")
    for name, rows in search.items():
        if rows:
            cols = list(rows[0])
            page.add_table(cols, [[r.get(c) for c in cols] for r in rows[:40]], caption=name)


def _examples_section(page: Page, results: Mapping[str, Any]) -> None:
    examples = results.get("examples") or []
    if not examples:
        return
    page.add_heading("Example generations (test split)")
    for ex in examples:
        page.add_text(f"[{ex.get('label')}/{ex.get('category')}] {ex['prompt']}")
        page.add_pre(f"before ({'refused' if ex['refused_before'] else 'complied'}): {ex['before']}")
        page.add_pre(f"after ({'refused' if ex['refused_after'] else 'complied'}): {ex['after']}")
