"""Files of ``alignscope bench``: ``bench.json``, ``bench.csv``, ``bench_deltas.png`` and ``report.html``.

* ``bench.json``: :meth:`~alignscope.recipes.bench.BenchResult.to_json` plus ``extra`` (the command's settings).
* ``bench.csv``: one row per (suite, metric, model): ``suite,metric,model,value,ci95_lo,ci95_hi,n``, and for
  an intervention its difference from the base model ``diff,diff_lo,diff_hi,p,test`` (empty for the base row).
* ``bench_deltas.png``: every intervention's differences with 95% intervals, one panel per suite.
* ``report.html``: a ``bench`` section: the table, the suites' notes (weak proxies, noisy sets) and the PNG.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from alignscope.io import atomic_write_json
from alignscope.recipes.bench import BenchResult
from alignscope.reports.html import Page
from alignscope.reports.plots import pyplot, save_figure
from alignscope.tables import write_csv

CSV_COLUMNS = ("suite", "metric", "model", "value", "ci95_lo", "ci95_hi", "n", "diff", "diff_lo", "diff_hi", "p", "test")


def bench_rows(result: BenchResult) -> list[dict[str, Any]]:
    """The rows of ``bench.csv`` (see the module docstring)."""
    rows = []
    for suite, metrics in result.suites().items():
        for metric, per_model in metrics.items():
            for model, m in per_model.items():
                row: dict[str, Any] = {"suite": suite, "metric": metric, "model": model, "value": m.value,
                                       "ci95_lo": m.ci95[0], "ci95_hi": m.ci95[1], "n": m.n}
                test = result.deltas.get(model, {}).get(suite, {}).get(metric)
                if test is not None:
                    row.update({"diff": test.diff, "diff_lo": test.ci95[0], "diff_hi": test.ci95[1], "p": test.p, "test": test.test})
                rows.append(row)
    return rows


def deltas_png(path: str | Path, result: BenchResult) -> Path:
    """One panel per suite: each metric's after-minus-before difference per intervention, with its 95% interval."""
    plt = pyplot()
    suites = list(result.suites())
    ivs = list(result.deltas)
    fig, axes = plt.subplots(len(suites), 1, figsize=(7, 1.2 + 0.45 * sum(len(result.suites()[s]) for s in suites) * max(1, len(ivs))),
                             squeeze=False)
    for ax, suite in zip(axes[:, 0], suites, strict=True):
        labels, diffs, los, his, colours = [], [], [], [], []
        for j, iv in enumerate(ivs):
            for metric, test in result.deltas[iv].get(suite, {}).items():
                labels.append(f"{metric} [{iv}]" if len(ivs) > 1 else metric)
                diffs.append(test.diff)
                los.append(test.diff - test.ci95[0])
                his.append(test.ci95[1] - test.diff)
                colours.append(f"C{j}")
        ys = np.arange(len(labels))
        for y, d, lo, hi, c in zip(ys, diffs, los, his, colours, strict=True):
            ax.errorbar([d], [y], xerr=[[max(lo, 0.0) if np.isfinite(lo) else 0.0], [max(hi, 0.0) if np.isfinite(hi) else 0.0]],
                        fmt="o", color=c, capsize=3)
        ax.axvline(0.0, color="grey", lw=0.8)
        ax.set_yticks(ys)
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_title(suite, fontsize=9)
    axes[-1, 0].set_xlabel("after - before (95% interval)")
    fig.tight_layout()
    return save_figure(fig, plt, path)


def bench_page(result: BenchResult, png: Path | None) -> Page:
    """The ``bench`` section of ``report.html``."""
    page = Page("alignscope bench", subtitle=f"models: {', '.join(result.models)}")
    page.add_heading("bench")
    rows = [[r["suite"], r["metric"], r["model"], r["value"], f"{r['ci95_lo']:.4g}-{r['ci95_hi']:.4g}", r["n"],
             r.get("diff", ""), r.get("p", ""), r.get("test", "")] for r in bench_rows(result)]
    page.add_table(["suite", "metric", "model", "value", "95% CI", "n", "diff", "p", "test"], rows,
                   caption="Each metric per model; an intervention's row carries its paired difference from the base model.")
    for suite, note in result.notes.items():
        page.add_text(f"{suite}: {note}", muted=True)
    for suite, src in result.sources.items():
        page.add_text(f"data {suite}: {src}", muted=True)
    if png is not None:
        page.add_image(png, alt="after-minus-before differences with 95% intervals")
    return page


def write_bench_outputs(out_dir: str | Path, result: BenchResult, extra: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write ``bench.json``, ``bench.csv``, ``bench_deltas.png`` (with at least one intervention) and ``report.html``.

    Returns:
        Name -> path of each file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"bench.json": out / "bench.json", "bench.csv": out / "bench.csv"}
    atomic_write_json(paths["bench.json"], {**result.to_json(), **(extra or {})})
    write_csv(paths["bench.csv"], bench_rows(result), CSV_COLUMNS)
    png = None
    if result.deltas:
        png = paths["bench_deltas.png"] = deltas_png(out / "bench_deltas.png", result)
    paths["report.html"] = bench_page(result, png).write(out / "report.html")
    return paths
