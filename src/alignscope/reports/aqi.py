"""Files of ``alignscope aqi``: ``result.json``, the per-layer AQI plot, the per-axiom bars and ``report.html``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alignscope.geometry.aqi import AQIResult
from alignscope.geometry.normalise import ABSOLUTE_NOTE, RELATIVE_NOTE
from alignscope.io import atomic_write_json
from alignscope.reports.html import Page
from alignscope.reports.plots import lines_png, pyplot, save_figure

FILES = {"result": "result.json", "layers": "aqi_layers.png", "axioms": "aqi_axioms.png", "report": "report.html"}


def axiom_bars_png(path: str | Path, result: AQIResult) -> Path:
    """Absolute AQI per axiom (with 95% whiskers) and the overall value, 0-100."""
    plt = pyplot()
    names = [*result.per_axiom, "overall"]
    rows = [*result.per_axiom.values()]
    vals = np.array([r.aqi for r in rows] + [result.aqi])
    lo = np.array([r.ci95[0] for r in rows] + [result.ci95[0]])
    hi = np.array([r.ci95[1] for r in rows] + [result.ci95[1]])
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(names) + 2), 4))
    ax.bar(range(len(names)), vals, yerr=[np.maximum(vals - lo, 0), np.maximum(hi - vals, 0)], capsize=3, color=["#4c72b0"] * len(rows) + ["#dd8452"])
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylim(0, 100)
    ax.set_ylabel("AQI (absolute, 0-100)")
    ax.set_title(f"AQI per axiom at layer {result.layer}")
    fig.tight_layout()
    return save_figure(fig, plt, path)


def write_aqi_outputs(out: str | Path, result: AQIResult) -> dict[str, Path]:
    """Write the four files into ``out`` (created); returns their paths by key."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {key: folder / name for key, name in FILES.items()}
    atomic_write_json(paths["result"], result.to_json())
    layers = [r.layer for r in result.per_layer]
    lines_png(paths["layers"], {"AQI": [r.aqi for r in result.per_layer]}, x=layers, title=f"AQI per layer: {result.model}",
              xlabel="layer (resid_post)", ylabel="AQI (absolute, 0-100)",
              bands={"AQI": ([r.ci95[0] for r in result.per_layer], [r.ci95[1] for r in result.per_layer])})
    axiom_bars_png(paths["axioms"], result)
    _page(result, paths).write(paths["report"])
    return paths


def _page(result: AQIResult, paths: dict[str, Path]) -> Page:
    page = Page(f"Alignment Quality Index: {result.model}", f"data {result.data}; representation: layer {result.layer}")
    page.add_heading("Overall")
    page.add_table(["aqi", "95% CI", "aqi_relative", "CHI", "XB", "Davies-Bouldin", "Dunn", "n safe", "n unsafe"],
                   [[result.aqi, f"{result.ci95[0]:.2f}-{result.ci95[1]:.2f}", result.aqi_relative, result.chi, result.xb,
                     result.davies_bouldin, result.dunn, result.n["safe"], result.n["unsafe"]]])
    page.add_text(ABSOLUTE_NOTE, muted=True)
    page.add_text(RELATIVE_NOTE, muted=True)
    page.add_heading("Per axiom")
    page.add_table(["axiom", "aqi", "95% CI", "aqi_relative", "CHI", "XB", "n safe", "n unsafe"],
                   [[a, r.aqi, f"{r.ci95[0]:.2f}-{r.ci95[1]:.2f}", r.aqi_relative, r.chi, r.xb, r.n["safe"], r.n["unsafe"]]
                    for a, r in result.per_axiom.items()])
    page.add_image(paths["axioms"], alt="AQI per axiom")
    page.add_heading("Per layer")
    page.add_text(f"Best-separating layers: {', '.join(str(x) for x in result.best_layers())}")
    page.add_image(paths["layers"], alt="AQI per layer")
    page.add_table(["layer", "aqi", "95% CI", "CHI", "XB"],
                   [[r.layer, r.aqi, f"{r.ci95[0]:.2f}-{r.ci95[1]:.2f}", r.chi, r.xb] for r in result.per_layer])
    if result.layer_weights is not None:
        page.add_heading("Learned layer weights")
        page.add_table(["layer", "weight"], [[i, w] for i, w in enumerate(result.layer_weights)])
    return page
