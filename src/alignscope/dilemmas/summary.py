"""Aggregate dilemma analyses into CSV, PNG and JSON, and compare several models in one table.

Every rate carries its n and a 95% Wilson interval; every mean over pairs a 95% interval.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from alignscope.dilemmas.analysis import PairAnalysis, analyse_pair
from alignscope.dilemmas.schema import DilemmaPair
from alignscope.io import atomic_write_json, atomic_write_text
from alignscope.lenses.unembed import Unembedder
from alignscope.models.loader import LoadedModel
from alignscope.stats import mean_ci, rate

log = logging.getLogger(__name__)

COMPARE_FIELDS = ("model", "n_pairs", "chose_ethical_base", "chose_ethical_cf", "consistent", "mean_content",
                  "mean_letter_bias", "mean_peak_layer", "mean_n_flip_layers", "mean_gini", "mean_top5", "seconds")


def analyse_dilemmas(lm: LoadedModel, pairs: Sequence[DilemmaPair], *, chat: bool = True, positions: str = "last",
                     progress: bool = False) -> list[PairAnalysis]:
    """Analyse every pair (one progress bar over pairs)."""
    ue = Unembedder.from_model(lm)
    return [analyse_pair(lm, p, chat=chat, positions=positions, unembed=ue)
            for p in tqdm(pairs, desc=f"dilemmas {lm.name}", disable=not progress)]


def _mean(values: Sequence[float]) -> dict[str, Any]:
    finite = [v for v in values if np.isfinite(v)]
    mean, (lo, hi) = mean_ci(finite)
    return {"mean": mean, "ci95": [lo, hi], "n": len(finite)}


def summarise(model: str, results: Sequence[PairAnalysis]) -> dict[str, Any]:
    """The aggregate JSON: choice rates, mean profiles per layer, concentration and DLA by component."""
    n = len(results)
    by_cat: dict[str, list[PairAnalysis]] = {}
    for r in results:
        by_cat.setdefault(r.category, []).append(r)
    patched = [r for r in results if r.patch_positions]  # pairs whose prompts aligned token for token
    profile = np.array([r.patch_profile for r in patched]) if patched else np.zeros((0, 0))
    return {
        "model": model, "n_pairs": n,
        "chose_ethical_base": rate(sum(r.chose_ethical_base for r in results), n).as_dict(),
        "chose_ethical_cf": rate(sum(r.chose_ethical_cf for r in results), n).as_dict(),
        "consistent": rate(sum(r.consistent for r in results), n).as_dict(),
        "consistent_by_category": {c: rate(sum(r.consistent for r in rs), len(rs)).as_dict() for c, rs in sorted(by_cat.items())},
        "content": _mean([r.content for r in results]), "letter_bias": _mean([r.letter_bias for r in results]),
        "n_patched": len(patched),
        "peak_layer": _mean([float(r.peak_layer) for r in patched]),
        "n_flip_layers": _mean([float(r.n_flip_layers) for r in patched]),
        "gini": _mean([r.gini for r in patched]), "top5_concentration": _mean([r.top5_concentration for r in patched]),
        "mean_patch_profile": profile.mean(0).tolist() if patched else [],
        "mean_dla_embed": float(np.mean([r.dla_embed for r in results])) if n else float("nan"),
        "mean_dla_attn": np.mean([r.dla_attn for r in results], axis=0).tolist() if n else [],
        "mean_dla_mlp": np.mean([r.dla_mlp for r in results], axis=0).tolist() if n else [],
        "max_dla_error": max((r.dla_error for r in results), default=0.0),
        "mean_lens_prob_ethical": np.mean([r.lens_prob_ethical for r in results], axis=0).tolist() if n else [],
        "mean_lens_prob_other": np.mean([r.lens_prob_other for r in results], axis=0).tolist() if n else [],
        "seconds": sum(r.seconds for r in results),
    }


def csv_text(rows: Sequence[dict[str, Any]], fields: Sequence[str] | None = None) -> str:
    """Rows as CSV text (columns from the first row unless given)."""
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields or rows[0].keys()), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_model_report(out_dir: str | Path, summary: dict[str, Any], results: Sequence[PairAnalysis]) -> list[Path]:
    """Write ``pairs.csv``, ``pairs.json``, ``summary.json`` and three PNGs into ``out_dir``."""
    from alignscope.reports.plots import heatmap_png, lines_png

    out = Path(out_dir)
    files = [out / "pairs.csv", out / "pairs.json", out / "summary.json"]
    atomic_write_text(files[0], csv_text([r.csv_row() for r in results]))
    atomic_write_json(files[1], [r.to_json() for r in results])
    atomic_write_json(files[2], summary)
    if not results:
        return files
    patched = [r for r in results if r.patch_positions] or results
    files.append(heatmap_png(out / "patch_profiles.png", [r.patch_profile for r in patched],
                             title=f"{summary['model']}: resid_pre patching, base -> swapped",
                             xlabel="layer", ylabel="pair", yticklabels=[r.id for r in patched],
                             colorbar_label="logit[A]-logit[B] change"))
    files.append(lines_png(out / "dla_by_layer.png", {"attention": summary["mean_dla_attn"], "MLP": summary["mean_dla_mlp"]},
                           title=f"{summary['model']}: DLA of the ethical margin",
                           xlabel="layer", ylabel="logit difference share"))
    files.append(lines_png(out / "lens_options.png", {"ethical option": summary["mean_lens_prob_ethical"],
                                                      "other option": summary["mean_lens_prob_other"]},
                           title=f"{summary['model']}: logit lens of the options (base)",
                           xlabel="layer", ylabel="probability"))
    return files


def compare_row(summary: dict[str, Any]) -> dict[str, Any]:
    """One row of the multi-model comparison table."""
    def fmt_rate(r: dict[str, Any]) -> str:
        return f"{r['rate']:.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}] ({r['k']}/{r['n']})"

    return {
        "model": summary["model"], "n_pairs": summary["n_pairs"],
        "chose_ethical_base": fmt_rate(summary["chose_ethical_base"]), "chose_ethical_cf": fmt_rate(summary["chose_ethical_cf"]),
        "consistent": fmt_rate(summary["consistent"]), "mean_content": round(summary["content"]["mean"], 4),
        "mean_letter_bias": round(summary["letter_bias"]["mean"], 4), "mean_peak_layer": round(summary["peak_layer"]["mean"], 2),
        "mean_n_flip_layers": round(summary["n_flip_layers"]["mean"], 2), "mean_gini": round(summary["gini"]["mean"], 4),
        "mean_top5": round(summary["top5_concentration"]["mean"], 4), "seconds": round(summary["seconds"], 1),
    }


def write_comparison(out_dir: str | Path, summaries: Sequence[dict[str, Any]]) -> Path:
    """``comparison.csv``: one row per model."""
    path = Path(out_dir) / "comparison.csv"
    atomic_write_text(path, csv_text([compare_row(s) for s in summaries], COMPARE_FIELDS))
    return path
