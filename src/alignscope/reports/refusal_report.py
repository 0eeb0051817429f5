"""The refusal-study report: ``report.html`` (self-contained, interactive plotly) and PNG plots.

Everything is drawn from the run's :class:`~alignscope.evals.study.StudyResults` (what
``results.json`` holds), so a report can be rebuilt from a finished run without the model
(``build_refusal_report(StudyResults.read(run / "results.json"), run)``). Every text that comes from data (prompts, generations, category names)
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

import numpy as np

from alignscope.evals.study import Grid, StudyResults
from alignscope.evals.study_evals import EvalSummary, GroupRate
from alignscope.reports.html import Page
from alignscope.reports.plots import heatmap_png, lines_png, pyplot, rate_bars_png, save_figure

# Rows of each search table shown in the report: enough for the held-out table's every category and style.
SEARCH_ROWS_SHOWN = 80


def _num(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _triple(rate: Any, ci: Sequence[Any]) -> tuple[float, float, float]:
    return (_num(rate), _num(ci[0]), _num(ci[1]))


def _groups(payload: EvalSummary, by: str) -> Mapping[str, GroupRate]:
    """The rates per label (``by="label"``), per category or per ``label/style``."""
    return payload.by_label if by == "label" else payload.by_style if by == "style" else payload.by_category


def rate_triples(payload: EvalSummary, by: str = "label") -> dict[str, tuple[float, float, float]]:
    """``{group: (rate, lo, hi)}`` from an evaluation, per label, category or style."""
    return {k: _triple(r.refusal_rate, r.ci95) for k, r in _groups(payload, by).items()}


def rate_rows(results: StudyResults, by: str) -> list[list[Any]]:
    """Table rows ``group, n, before, CI, after, CI`` for labels, categories or styles (n/a where after lacks the group)."""
    after = _groups(results.after, by)
    rows = []
    for g, b in _groups(results.baseline, by).items():
        a = after.get(g)
        rows.append([g, b.n, _pct(b.refusal_rate), _ci(b.ci95), _pct(None if a is None else a.refusal_rate), _ci(None if a is None else a.ci95)])
    return rows


def _pct(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * float(x):.1f}%"


def _ci(ci: Sequence[float] | None) -> str:
    return "n/a" if not ci else f"[{100 * ci[0]:.1f}%, {100 * ci[1]:.1f}%]"


def _conditions(results: StudyResults) -> tuple[tuple[str, EvalSummary], ...]:
    """``(name, evaluation)`` before and after the intervention."""
    return (("before", results.baseline), ("after", results.after))


def _bar_figure(results: StudyResults, by: str, title: str) -> dict[str, Any]:
    data = []
    for name, payload in _conditions(results):
        triples = rate_triples(payload, by)
        groups = list(triples)
        data.append({"type": "bar", "name": name, "x": groups, "y": [t[0] for t in triples.values()],
                     "error_y": {"type": "data", "symmetric": False, "array": [t[2] - t[0] for t in triples.values()],
                                 "arrayminus": [t[0] - t[1] for t in triples.values()]},
                     "customdata": [_groups(payload, by)[g].n for g in groups],
                     "hovertemplate": "%{x}: %{y:.1%} (n=%{customdata})<extra>" + name + "</extra>"})
    return {"data": data, "layout": {"title": {"text": title}, "barmode": "group", "yaxis": {"range": [0, 1.05], "tickformat": ".0%"},
                                     "height": 420}}


def _heatmap_figure(grid: Grid) -> dict[str, Any]:
    z = [[None if v is None or math.isnan(v) else v for v in row] for row in grid.values]
    return {"data": [{"type": "heatmap", "z": z, "x": [str(p) for p in grid.positions], "y": [str(layer) for layer in grid.layers],
                      "colorscale": "RdBu", "reversescale": True, "colorbar": {"title": {"text": grid.key}},
                      "hovertemplate": "layer %{y}, position %{x}: %{z:.3f}<extra></extra>"}],
            "layout": {"title": {"text": f"{grid.name} (blank: not scored)"},
                       "xaxis": {"title": {"text": "position (offset from end)"}}, "yaxis": {"title": {"text": "layer"}}, "height": 520}}


def _lines_figure(x: Sequence[int], series: Mapping[str, Sequence[float | None]], title: str, ytitle: str) -> dict[str, Any]:
    return {"data": [{"type": "scatter", "mode": "lines+markers", "name": k, "x": list(x), "y": list(v)} for k, v in series.items()],
            "layout": {"title": {"text": title}, "xaxis": {"title": {"text": "layer"}}, "yaxis": {"title": {"text": ytitle}}, "height": 380}}


def category_bars_png(path: Path, groups: Mapping[str, Mapping[str, tuple[float, float, float]]], *, title: str) -> Path:
    """Horizontal grouped bars (one row per category, in first-seen order) with interval whiskers."""
    plt = pyplot()
    cats = list(dict.fromkeys(c for g in groups.values() for c in g))
    height = 0.8 / max(1, len(groups))
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.32 * len(cats) + 1.2)))
    for i, (cond, triples) in enumerate(groups.items()):
        vals = np.array([triples.get(c, (np.nan,) * 3) for c in cats], dtype=float).reshape(len(cats), 3)  # no categories: no bars
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
    return save_figure(fig, plt, path)


def write_pngs(results: StudyResults, out_dir: Path) -> dict[str, Path]:
    """The static plots: rates before/after (labels, categories), candidate heatmap, direction curves."""
    paths: dict[str, Path] = {}
    paths["rates.png"] = rate_bars_png(out_dir / "rates.png", {name: rate_triples(ev) for name, ev in _conditions(results)},
                                       title="Refusal rate on the test split (95% Wilson CI)")
    paths["rates_by_category.png"] = category_bars_png(out_dir / "rates_by_category.png",
                                                       {name: rate_triples(ev, "category") for name, ev in _conditions(results)},
                                                       title="Refusal rate by category (test split, 95% Wilson CI)")
    if results.baseline.by_style:
        paths["rates_by_style.png"] = category_bars_png(out_dir / "rates_by_style.png",
                                                        {name: rate_triples(ev, "style") for name, ev in _conditions(results)},
                                                        title="Refusal rate by label and prompt style (test split, 95% Wilson CI)")
    for i, grid in enumerate(results.selection.grids):
        name = "candidates.png" if i == 0 else f"candidates_{grid.key}.png"
        paths[name] = heatmap_png(out_dir / name, [[_num(v) for v in row] for row in grid.values],
                                  title=f"Candidates: {grid.key}", xlabel="position (offset from end)", ylabel="layer",
                                  xticklabels=[str(p) for p in grid.positions], yticklabels=[str(x) for x in grid.layers],
                                  center_zero=grid.key != "kl", colorbar_label=grid.key)
    curves = results.directions.curves
    paths["directions.png"] = lines_png(out_dir / "directions.png", {"norm": [_num(v) for v in curves.norm]}, x=curves.layers,
                                        title="Difference-in-means norm per layer", xlabel="layer", ylabel="norm")
    paths["cosine.png"] = lines_png(out_dir / "cosine.png", {k: [_num(v) for v in ys] for k, ys in curves.cosine().items()},
                                    x=curves.layers, title="Cosine similarity per layer", xlabel="layer", ylabel="cosine")
    return paths


def build_refusal_report(results: StudyResults, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.html`` and the PNG plots under ``out_dir``; returns name -> path."""
    out = Path(out_dir)
    paths = write_pngs(results, out)
    page = Page(f"alignscope refusal study: {results.model.name}",
                subtitle=f"{results.model.n_layers} layers, d_model {results.model.d_model}; "
                         f"rates on the held-out test split (never used to choose anything); run took {results.seconds:.0f} s")
    _summary_section(page, results)
    _rates_section(page, results)
    _selection_section(page, results)
    _directions_section(page, results)
    _intervention_section(page, results)
    _examples_section(page, results)
    paths["report.html"] = page.write(out / "report.html")
    return paths


def _summary_section(page: Page, results: StudyResults) -> None:
    page.add_heading("Summary")
    page.add_table(["label", "n", "refusal before", "95% CI", "refusal after", "95% CI"], rate_rows(results, "label"),
                   caption="Refusal rate per label (test split)")
    kl = results.kl
    page.add_text(f"First-token KL(unsteered || steered) on {kl.n} harmless test prompts: mean {_f4(kl.mean)} nats "
                  f"(95% CI {_f4(kl.ci95[0])} to {_f4(kl.ci95[1])}), max {_f4(kl.max)}.")
    iv = results.intervention
    page.add_text(f"Intervention: {iv.kind} saved to {iv.file}; {iv.description}")


def _f4(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _rates_section(page: Page, results: StudyResults) -> None:
    page.add_heading("Refusal rates before and after")
    page.add_figure(_bar_figure(results, "label", "Refusal rate per label (95% Wilson CI)"))
    page.add_figure(_bar_figure(results, "category", "Refusal rate per category (95% Wilson CI)"))
    page.add_table(["category", "n", "before", "95% CI", "after", "95% CI"], rate_rows(results, "category"))
    if results.baseline.by_style:
        page.add_figure(_bar_figure(results, "style", "Refusal rate per label and prompt style (95% Wilson CI)"))
        page.add_table(["label/style", "n", "before", "95% CI", "after", "95% CI"], rate_rows(results, "style"),
                       caption="How the phrasing of a prompt moves its refusal rate (lookalikes apart from other harmless prompts)")
    for name, payload in results.comparisons.items():
        rows = [[k, r.n, _pct(r.refusal_rate), _ci(r.ci95)] for k, r in payload.by_label.items()]
        page.add_table(["label", "n", "refusal", "95% CI"], rows, caption=f"Comparison: {name}")


def _selection_section(page: Page, results: StudyResults) -> None:
    sel = results.selection
    page.add_heading("Direction selection (validation split)")
    if sel.best:
        page.add_text("Chosen candidate: " + ", ".join(f"{k}={_fmt_cell(v)}" for k, v in sel.best.items()))
    for grid in sel.grids:
        page.add_figure(_heatmap_figure(grid))
    if sel.table:
        cols = list(sel.table[0])
        sign = 1.0 if sel.sort_ascending else -1.0
        key = sel.sort_key
        top = sorted(sel.table, key=lambda r: (bool(r.get("filtered")), sign * _sortable(r.get(key), sign)))[:15]
        page.add_table(cols, [[r.get(c) for c in cols] for r in top],
                       caption=f"Best candidates by {key} ({len(sel.table)} in total; the full table is in results.json)")


def _sortable(value: Any, sign: float = -1.0) -> float:
    """A float key that puts missing/NaN values last whichever way the table is sorted."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return sign * float("inf")
    return v if math.isfinite(v) else sign * float("inf")


def _fmt_cell(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _directions_section(page: Page, results: StudyResults) -> None:
    curves = results.directions.curves
    page.add_heading("Directions per layer")
    page.add_figure(_lines_figure(curves.layers, {"norm": curves.norm}, "Difference-in-means norm per layer", "norm"))
    page.add_figure(_lines_figure(curves.layers, curves.cosine(), "Cosine similarity per layer", "cosine"))


def _intervention_section(page: Page, results: StudyResults) -> None:
    iv = results.intervention
    if not iv.search and not iv.params:
        return
    gate = results.gate
    if gate and gate.by_label:
        page.add_heading("Where the gate fired (test split)")
        rows = []
        for name, g in gate.by_label.items():
            rows.append([name, g.gate.n, _pct(g.gate.rate), _ci(g.gate.ci95),
                         f"{g.refused_when_gated.k}/{g.refused_when_gated.n}",
                         f"{g.refused_when_not_gated.k}/{g.refused_when_not_gated.n}"])
        page.add_table(["label", "n", "gate fired", "95% CI", "refused when gated", "refused when not gated"], rows,
                       caption=f"probe threshold {_fmt_cell(gate.threshold)}")
    page.add_heading("Intervention search (train and validation splits only)")
    if iv.params:
        page.add_table(["parameter", "value"], [[k, v] for k, v in iv.params.items()], caption="Chosen")
    for name, search_rows in iv.search.items():
        if search_rows:
            cols = list(search_rows[0])
            shown = search_rows[:SEARCH_ROWS_SHOWN]
            more = f" (the first {len(shown)} of {len(search_rows)} rows; results.json has them all)" if len(shown) < len(search_rows) else ""
            page.add_table(cols, [[r.get(c) for c in cols] for r in shown], caption=name + more)


def _examples_section(page: Page, results: StudyResults) -> None:
    if not results.examples:
        return
    page.add_heading("Example generations (test split)")
    for ex in results.examples:
        page.add_text(f"[{ex.label}/{ex.category}] {ex.prompt}")
        page.add_pre(f"before ({'refused' if ex.refused_before else 'complied'}): {ex.before}")
        page.add_pre(f"after ({'refused' if ex.refused_after else 'complied'}): {ex.after}")
