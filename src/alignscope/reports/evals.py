"""Write a refusal evaluation to a directory: JSON, JSONL, CSV and a PNG of rates with intervals.

Files (every one written atomically):

* ``eval.json``: the :meth:`RefusalEval.to_json` payload plus anything in ``extra``.
* ``generations.jsonl``: one row per prompt (prompt, label, category, generation, verdicts, score).
* ``by_category.csv``: ``category,label,n,k,refusal_rate,ci95_lo,ci95_hi``.
* ``by_style.csv`` (when prompts carry a style): ``style,n,k,refusal_rate,ci95_lo,ci95_hi``, one row per ``label/style``.
* ``rates.png`` (per label) and ``by_category.png``: refusal rates with 95% Wilson whiskers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alignscope.evals.behaviour import RefusalEval, category_key, label_of
from alignscope.io import atomic_write_json, atomic_write_text
from alignscope.reports.plots import rate_bars_png
from alignscope.stats import Rate
from alignscope.tables import write_csv

CATEGORY_COLUMNS = ("category", "label", "n", "k", "refusal_rate", "ci95_lo", "ci95_hi")
STYLE_COLUMNS = ("style", "n", "k", "refusal_rate", "ci95_lo", "ci95_hi")


def category_rows(ev: RefusalEval) -> list[dict[str, Any]]:
    """One row per category key: category, its label, n, k, rate and interval."""
    label_by_key: dict[str, str] = {}
    for key, p in zip(category_key(ev.prompts), ev.prompts, strict=True):
        if key is not None:
            label_by_key.setdefault(key, label_of(p.label))
    return [{"category": key, "label": label_by_key[key], **_rate_cells(r)} for key, r in ev.by_category.items()]


def style_rows(ev: RefusalEval) -> list[dict[str, Any]]:
    """One row per ``label/style`` key: the key, n, k, rate and interval."""
    return [{"style": key, **_rate_cells(r)} for key, r in ev.by_style.items()]


def _rate_cells(r: Rate) -> dict[str, Any]:
    return {"n": r.n, "k": r.k, "refusal_rate": r.rate, "ci95_lo": r.ci95[0], "ci95_hi": r.ci95[1]}


def write_eval_outputs(out_dir: str | Path, ev: RefusalEval, extra: Mapping[str, Any] | None = None,
                       *, title: str = "Refusal rate") -> dict[str, Path]:
    """Write ``eval.json``, ``generations.jsonl``, ``by_category.csv`` and ``rates.png`` under ``out_dir``.

    Returns:
        Name -> path of each file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("eval.json", "generations.jsonl", "by_category.csv", "rates.png")}
    atomic_write_json(paths["eval.json"], {**ev.to_json(), **(extra or {})})
    atomic_write_text(paths["generations.jsonl"],
                      "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in ev.records()))
    write_csv(paths["by_category.csv"], category_rows(ev), CATEGORY_COLUMNS)
    rate_bars_png(paths["rates.png"], {"refusal": {k: (r.rate, *r.ci95) for k, r in ev.by_label.items()}}, title=title)
    if ev.by_style:
        paths["by_style.csv"] = write_csv(out / "by_style.csv", style_rows(ev), STYLE_COLUMNS)
    if ev.by_category:
        paths["by_category.png"] = rate_bars_png(out / "by_category.png", {"refusal": {k: (r.rate, *r.ci95) for k, r in ev.by_category.items()}},
                                                 title=f"{title} by category")
    return paths
