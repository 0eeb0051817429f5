"""Files of a sweep (``alignscope compare``), drawn from the unit records; each part appears when its metric ran.

* ``summary.json``: the ``--json`` object plus ``skipped`` (entry -> reason), ``reused`` and ``computed`` units;
* ``models/KEY/result.json``: every metric's record for one model (the per-unit files stay beside it);
* ``model_dims.png``: layers x width of every model measured;
* ``deltas_cosine.png``, ``deltas_delta_norm.png``, ``deltas_explained_variance.png``: the per-layer
  curves of every base-vs-aligned pair, overlaid (x: depth as a fraction of the model's layers, so
  models of different depths line up);
* ``aqi_bars.png`` and ``aqi_heatmap.png`` (axiom x model), when the ``aqi`` metric ran (its summary
  holds ``aqi``, optional ``ci95`` and ``per_axiom: {axiom: {aqi}}``);
* ``report.html``: one page with the tables and these plots (every data-drawn text escaped).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alignscope.io import atomic_write_json
from alignscope.reports.html import Page
from alignscope.reports.plots import bars_png, heatmap_png, labelled_points_png, lines_png, pyplot, save_figure

Records = Mapping[str, Mapping[str, Mapping[str, Any]]]
"""``{model: {metric: record}}``; a record holds ``result`` (the metric's summary), ``model_info`` and ``seconds``."""


def _depth(n: int) -> list[float]:
    return [i / max(1, n - 1) for i in range(n)]


def _by_metric(records: Records, metric: str) -> dict[str, Mapping[str, Any]]:
    return {key: rec[metric]["result"] for key, rec in records.items() if metric in rec}


def write_sweep_files(out: str | Path, summary: Mapping[str, Any], records: Records) -> list[Path]:
    """Write every file of the module docstring that has data; returns the paths written."""
    root = Path(out)
    written: list[Path] = []
    atomic_write_json(root / "summary.json", dict(summary))
    written.append(root / "summary.json")
    for key, by_metric in records.items():
        atomic_write_json(root / "models" / key / "result.json", {"model": key, "metrics": dict(by_metric)})
        written.append(root / "models" / key / "result.json")
    page = Page("alignscope compare", f"{len(records)} models; metrics: {', '.join(summary.get('metrics', []))}; "
                                      f"executor: {summary.get('executor')}")
    written += _dims(root, records, page)
    written += _deltas(root, _by_metric(records, "deltas"), page)
    written += _aqi(root, _by_metric(records, "aqi"), page)
    skipped = summary.get("skipped") or {}
    if skipped:
        page.add_heading("Skipped models")
        page.add_table(["model", "reason"], [[k, v] for k, v in skipped.items()])
    written.append(page.write(root / "report.html"))
    return written


def _dims(root: Path, records: Records, page: Page) -> list[Path]:
    infos = {key: next(iter(rec.values())).get("model_info") or {} for key, rec in records.items() if rec}
    infos = {k: v for k, v in infos.items() if "n_layers" in v}
    if not infos:
        return []
    page.add_heading("Models")
    page.add_table(["model", "name", "model_type", "layers", "d_model", "heads", "dtype"],
                   [[k, v.get("model"), v.get("model_type"), v.get("n_layers"), v.get("d_model"), v.get("n_heads"), v.get("dtype")]
                    for k, v in infos.items()])
    path = labelled_points_png(root / "model_dims.png", {k: (float(v["n_layers"]), float(v["d_model"])) for k, v in infos.items()},
                               title="model dimensions", xlabel="layers", ylabel="d_model")
    page.add_image(path, alt="model dimensions")
    return [path]


def _deltas(root: Path, results: Mapping[str, Mapping[str, Any]], page: Page) -> list[Path]:
    if not results:
        return []
    page.add_heading("Base vs aligned: where the hidden states moved")
    page.add_table(["aligned", "base", "layers", "peak layer", "max |delta| (chosen)", "min cosine (chosen)", "data"],
                   [[key, r["base"], r["n_layers"], r["peak_layer"], max(p["delta_norm_chosen"] for p in r["per_layer"]),
                     min(p["cosine_chosen"] for p in r["per_layer"]), r["data"]["source"]] for key, r in results.items()])
    page.add_text("x axis: depth as a fraction of each model's layers; the peak layer is where the delta norm grows the most "
                  "over the layer before (where the difference enters the residual stream).", muted=True)
    written = []
    for field, name, ylabel in (("cosine_chosen", "deltas_cosine.png", "cosine (chosen texts)"),
                                ("delta_norm_chosen", "deltas_delta_norm.png", "|aligned - base| (chosen texts)"),
                                ("explained_variance_k", "deltas_explained_variance.png", "explained variance of component k")):
        series, xs = {}, None
        for key, r in results.items():
            values = [p[field] for p in r["per_layer"]]
            if any(v is None for v in values):
                continue
            series[f"{key} vs {r['base']}"] = values
            xs = _depth(len(values))
        if not series:
            continue
        if len({len(v) for v in series.values()}) == 1 and xs is not None:
            path = lines_png(root / name, series, x=xs, title=ylabel, xlabel="depth (layer / (n_layers - 1))", ylabel=ylabel)
        else:
            path = _overlay(root / name, series, ylabel)
        page.add_image(path, alt=ylabel)
        written.append(path)
    return written


def _overlay(path: Path, series: Mapping[str, list[float]], ylabel: str) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, ys in series.items():
        ax.plot(_depth(len(ys)), ys, marker="o", markersize=3, label=name)
    ax.set_xlabel("depth (layer / (n_layers - 1))")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, plt, path)


def _aqi(root: Path, results: Mapping[str, Mapping[str, Any]], page: Page) -> list[Path]:
    scored = {k: r for k, r in results.items() if isinstance(r.get("aqi"), (int, float))}
    if not scored:
        return []
    page.add_heading("Alignment Quality Index")
    errors = {k: (float(r["ci95"][0]), float(r["ci95"][1])) for k, r in scored.items() if isinstance(r.get("ci95"), list)}
    bars = bars_png(root / "aqi_bars.png", {k: float(r["aqi"]) for k, r in scored.items()}, title="AQI per model",
                    ylabel="AQI (absolute)", errors=errors)
    page.add_image(bars, alt="AQI per model")
    written = [bars]
    axioms = sorted({a for r in scored.values() for a in (r.get("per_axiom") or {})})
    if axioms:
        grid = [[float((scored[k].get("per_axiom") or {}).get(a, {}).get("aqi", float("nan"))) for k in scored] for a in axioms]
        heat = heatmap_png(root / "aqi_heatmap.png", grid, title="AQI per axiom and model", xlabel="model", ylabel="axiom",
                           xticklabels=list(scored), yticklabels=axioms, center_zero=False, colorbar_label="AQI")
        page.add_image(heat, alt="AQI per axiom and model")
        written.append(heat)
    page.add_table(["model", "aqi", "ci95"], [[k, r["aqi"], r.get("ci95")] for k, r in scored.items()])
    return written
