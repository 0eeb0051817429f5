"""Analyse a list of dilemma pairs and summarise them per model.

Every rate carries its n and a 95% Wilson interval; every mean over pairs a 95% interval.
:mod:`alignscope.reports.dilemmas` writes the files and the multi-model comparison.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from alignscope.dilemmas.analysis import PairAnalysis, analyse_pair
from alignscope.dilemmas.schema import DilemmaPair
from alignscope.lenses.unembed import Unembedder
from alignscope.models.loader import LoadedModel
from alignscope.stats import mean_ci, rate

log = logging.getLogger(__name__)

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
