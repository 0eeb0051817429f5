"""Dilemma analyses written as CSV, JSON and PNG, and several models compared in one table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alignscope.dilemmas.analysis import PairAnalysis
from alignscope.dilemmas.summary import DilemmaSummary
from alignscope.io import atomic_write_json
from alignscope.reports.plots import heatmap_png, lines_png
from alignscope.stats import Rate
from alignscope.tables import write_csv

COMPARE_FIELDS = ("model", "n_pairs", "chose_ethical_base", "chose_ethical_cf", "consistent", "mean_content",
                  "mean_letter_bias", "mean_peak_layer", "mean_n_flip_layers", "mean_gini", "mean_top5", "seconds")


def write_model_report(out_dir: str | Path, summary: DilemmaSummary, results: Sequence[PairAnalysis]) -> list[Path]:
    """Write ``pairs.csv``, ``pairs.json``, ``summary.json`` and three PNGs into ``out_dir``."""
    out = Path(out_dir)
    files = [out / "pairs.csv", out / "pairs.json", out / "summary.json"]
    write_csv(files[0], [r.csv_row() for r in results])
    atomic_write_json(files[1], [r.to_json() for r in results])
    atomic_write_json(files[2], summary.to_json())
    if not results:
        return files
    patched = [r for r in results if r.patch_positions] or results
    files.append(heatmap_png(out / "patch_profiles.png", [r.patch_profile for r in patched],
                             title=f"{summary.model}: resid_pre patching, base -> swapped",
                             xlabel="layer", ylabel="pair", yticklabels=[r.id for r in patched],
                             colorbar_label="logit[A]-logit[B] change"))
    files.append(lines_png(out / "dla_by_layer.png", {"attention": summary.mean_dla_attn, "MLP": summary.mean_dla_mlp},
                           title=f"{summary.model}: DLA of the ethical margin",
                           xlabel="layer", ylabel="logit difference share"))
    files.append(lines_png(out / "lens_options.png", {"ethical option": summary.mean_lens_prob_ethical,
                                                      "other option": summary.mean_lens_prob_other},
                           title=f"{summary.model}: logit lens of the options (base)",
                           xlabel="layer", ylabel="probability"))
    return files


def compare_row(summary: DilemmaSummary) -> dict[str, Any]:
    """One row of the multi-model comparison table."""
    def fmt_rate(r: Rate) -> str:
        lo, hi = r.ci95
        return f"{r.rate:.2f} [{lo:.2f}, {hi:.2f}] ({r.k}/{r.n})"

    return {
        "model": summary.model, "n_pairs": summary.n_pairs,
        "chose_ethical_base": fmt_rate(summary.chose_ethical_base), "chose_ethical_cf": fmt_rate(summary.chose_ethical_cf),
        "consistent": fmt_rate(summary.consistent), "mean_content": round(summary.content.mean, 4),
        "mean_letter_bias": round(summary.letter_bias.mean, 4), "mean_peak_layer": round(summary.peak_layer.mean, 2),
        "mean_n_flip_layers": round(summary.n_flip_layers.mean, 2), "mean_gini": round(summary.gini.mean, 4),
        "mean_top5": round(summary.top5_concentration.mean, 4), "seconds": round(summary.seconds, 1),
    }


def write_comparison(out_dir: str | Path, summaries: Sequence[DilemmaSummary]) -> Path:
    """``comparison.csv``: one row per model."""
    path = Path(out_dir) / "comparison.csv"
    return write_csv(path, [compare_row(s) for s in summaries], COMPARE_FIELDS)
