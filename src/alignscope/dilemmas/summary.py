"""Analyse a list of dilemma pairs and summarise them per model.

Every rate carries its n and a 95% Wilson interval; every mean over pairs a 95% interval.
:mod:`alignscope.reports.dilemmas` writes the files and the multi-model comparison.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from alignscope.dilemmas.analysis import PairAnalysis, analyse_pair
from alignscope.dilemmas.schema import DilemmaPair
from alignscope.lenses.unembed import Unembedder
from alignscope.models.loader import LoadedModel
from alignscope.stats import MeanCI, Rate, rate

log = logging.getLogger(__name__)

def analyse_dilemmas(lm: LoadedModel, pairs: Sequence[DilemmaPair], *, chat: bool = True, positions: str = "last",
                     progress: bool = False) -> list[PairAnalysis]:
    """Analyse every pair (one progress bar over pairs)."""
    ue = Unembedder.from_model(lm)
    return [analyse_pair(lm, p, chat=chat, positions=positions, unembed=ue)
            for p in tqdm(pairs, desc=f"dilemmas {lm.name}", disable=not progress)]


@dataclass(frozen=True)
class DilemmaSummary:
    """One model's dilemma results, aggregated over pairs (``summary.json``).

    Attributes:
        model: the model's name.
        n_pairs: pairs analysed.
        chose_ethical_base: pairs whose base prompt the model answered with the ethical option.
        chose_ethical_cf: the same on the counterfactual (options swapped).
        consistent: pairs answered ethically both ways; ``consistent_by_category`` per category.
        content: mean content score; ``letter_bias`` mean preference for one letter.
        n_patched: pairs whose prompts aligned token for token (so they have a patching profile).
        peak_layer: mean layer of the largest patching effect; ``n_flip_layers`` mean number of
            layers whose patch flips the choice; ``gini`` and ``top5_concentration`` how
            concentrated the profile is (all over the patched pairs).
        mean_patch_profile: ``(n_layers,)`` mean patching profile (empty without patched pairs).
        mean_dla_embed, mean_dla_attn, mean_dla_mlp: mean direct logit attribution of the
            ethical margin to the embeddings and to each layer's attention and MLP.
        max_dla_error: the largest DLA reconstruction error over pairs.
        mean_lens_prob_ethical, mean_lens_prob_other: mean logit-lens probability of each option per layer.
        seconds: analysis time summed over pairs.
    """

    model: str
    n_pairs: int
    chose_ethical_base: Rate
    chose_ethical_cf: Rate
    consistent: Rate
    consistent_by_category: dict[str, Rate]
    content: MeanCI
    letter_bias: MeanCI
    n_patched: int
    peak_layer: MeanCI
    n_flip_layers: MeanCI
    gini: MeanCI
    top5_concentration: MeanCI
    mean_patch_profile: list[float]
    mean_dla_embed: float
    mean_dla_attn: list[float]
    mean_dla_mlp: list[float]
    max_dla_error: float
    mean_lens_prob_ethical: list[float]
    mean_lens_prob_other: list[float]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """The ``summary.json`` object (rates with n and Wilson intervals, means with 95% intervals)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Rate):
                value = value.as_dict()
            elif isinstance(value, MeanCI):
                value = value.to_json()
            elif f.name == "consistent_by_category":
                value = {c: r.as_dict() for c, r in value.items()}
            out[f.name] = value
        return out


def summarise(model: str, results: Sequence[PairAnalysis]) -> DilemmaSummary:
    """Aggregate one model's pair analyses: choice rates, mean profiles per layer, concentration and DLA by component."""
    n = len(results)
    by_cat: dict[str, list[PairAnalysis]] = {}
    for r in results:
        by_cat.setdefault(r.category, []).append(r)
    patched = [r for r in results if r.patch_positions]  # pairs whose prompts aligned token for token
    profile = np.array([r.patch_profile for r in patched]) if patched else np.zeros((0, 0))
    return DilemmaSummary(
        model=model, n_pairs=n,
        chose_ethical_base=rate(sum(r.chose_ethical_base for r in results), n),
        chose_ethical_cf=rate(sum(r.chose_ethical_cf for r in results), n),
        consistent=rate(sum(r.consistent for r in results), n),
        consistent_by_category={c: rate(sum(r.consistent for r in rs), len(rs)) for c, rs in sorted(by_cat.items())},
        content=MeanCI.of([r.content for r in results]), letter_bias=MeanCI.of([r.letter_bias for r in results]),
        n_patched=len(patched),
        peak_layer=MeanCI.of([float(r.peak_layer) for r in patched]),
        n_flip_layers=MeanCI.of([float(r.n_flip_layers) for r in patched]),
        gini=MeanCI.of([r.gini for r in patched]), top5_concentration=MeanCI.of([r.top5_concentration for r in patched]),
        mean_patch_profile=profile.mean(0).tolist() if patched else [],
        mean_dla_embed=float(np.mean([r.dla_embed for r in results])) if n else float("nan"),
        mean_dla_attn=np.mean([r.dla_attn for r in results], axis=0).tolist() if n else [],
        mean_dla_mlp=np.mean([r.dla_mlp for r in results], axis=0).tolist() if n else [],
        max_dla_error=max((r.dla_error for r in results), default=0.0),
        mean_lens_prob_ethical=np.mean([r.lens_prob_ethical for r in results], axis=0).tolist() if n else [],
        mean_lens_prob_other=np.mean([r.lens_prob_other for r in results], axis=0).tolist() if n else [],
        seconds=sum(r.seconds for r in results),
    )
