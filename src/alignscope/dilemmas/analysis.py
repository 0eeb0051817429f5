"""Per-pair analysis of an ethical dilemma: the choice, where it is made, and which components push it.

For a pair (base prompt with the ethical option first, counterfactual with the options swapped)
and the option tokens ``A``/``B``:

* **choice**: the margin ``logit[ethical] - logit[other]`` at the first answer position of each
  prompt; the model chose the ethical option when it is positive. ``content`` is the mean of the
  two margins (what follows the *action*), ``letter_bias`` the mean of ``logit[A] - logit[B]``
  over the two prompts (what follows the *letter*).
* **patching profile**: denoising activation patching of ``resid_pre`` from the base run into the
  counterfactual run with the metric ``logit[A] - logit[B]`` (the base prompt's answer minus
  foil). ``positions="all"`` calls :func:`alignscope.circuits.patching.activation_patching`
  (every layer x every position); ``"post"`` patches only the post-instruction tokens through
  the same replay engine; ``"last"`` (default) patches the last token only, with the corrupt
  run's KV cache (:mod:`alignscope.dilemmas.last_position`, equal to activation patching's last
  column), which is what makes 40 pairs affordable on a CPU. Per layer the profile is the effect at the position with the largest
  ``|effect|``; a patch *flips the choice* when the patched metric's sign differs from the
  counterfactual's. Reported: peak layer, number of layers with a flip, Gini coefficient and
  top-5 concentration of ``|profile|``.
* **DLA**: direct logit attribution of the content margin, ``(DLA_base + DLA_cf) / 2`` of
  ``logit[ethical] - logit[other]``, by embedding, attention layer and MLP layer.
* **lens**: logit-lens probability of the ethical and the other option token at every layer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from alignscope.circuits.patching import activation_patching, record_pair
from alignscope.circuits.replay import Patch, replay
from alignscope.dilemmas.last_position import last_position_patching
from alignscope.dilemmas.schema import DilemmaPair
from alignscope.errors import InputError
from alignscope.lenses.dla import attribute_parts, residual_parts
from alignscope.lenses.logit_lens import lens_logits
from alignscope.lenses.unembed import Unembedder
from alignscope.metrics import logit_diff_metric, single_token_id
from alignscope.models.chat import encode_one
from alignscope.models.loader import LoadedModel
from alignscope.stats import gini, top_k_concentration

PATCH_POSITIONS = ("last", "post", "all")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairAnalysis:
    """Everything measured on one dilemma pair (JSON-ready floats and lists)."""

    id: str
    category: str
    margin_base: float
    margin_cf: float
    chose_ethical_base: bool
    chose_ethical_cf: bool
    content: float
    letter_bias: float
    patch_profile: list[float]
    patch_recovered: list[float]
    peak_layer: int
    n_flip_layers: int
    gini: float
    top5_concentration: float
    patch_positions: list[int]
    dla_embed: float
    dla_attn: list[float]
    dla_mlp: list[float]
    dla_error: float
    lens_prob_ethical: list[float]
    lens_prob_other: list[float]
    seconds: float

    @property
    def consistent(self) -> bool:
        """Chose the ethical option in both prompts (not explainable by a letter preference)."""
        return self.chose_ethical_base and self.chose_ethical_cf

    def csv_row(self) -> dict[str, Any]:
        """The scalar fields (one CSV row)."""
        row = {k: v for k, v in asdict(self).items() if not isinstance(v, list)}
        row["consistent"] = self.consistent
        row["dla_attn_total"] = sum(self.dla_attn)
        row["dla_mlp_total"] = sum(self.dla_mlp)
        return row

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "consistent": self.consistent}


def option_ids(lm: LoadedModel, pair: DilemmaPair) -> tuple[int, int]:
    """Token ids of the base prompt's ethical and other option (the counterfactual uses the same two)."""
    eth = single_token_id(lm.tokenizer, pair.base.ethical_option, field=f"{pair.id}.base.ethical_option")
    other = single_token_id(lm.tokenizer, pair.base.other_option, field=f"{pair.id}.base.other_option")
    cf = {single_token_id(lm.tokenizer, t, field=f"{pair.id}.counterfactual") for t in
          (pair.counterfactual.ethical_option, pair.counterfactual.other_option)}
    if cf != {eth, other}:
        raise InputError("the counterfactual must use the same two option tokens as the base prompt", field=f"{pair.id}.counterfactual")
    return eth, other


def patch_profile(
    lm: LoadedModel, clean_ids: Sequence[int], corrupt_ids: Sequence[int], answer: int, foil: int,
    positions: str = "last", n_post: int = 1,
) -> tuple[torch.Tensor, float, float, list[int]]:
    """Denoising ``resid_pre`` patching; returns ``(effect (n_layers, n_cols), clean, corrupt, position indices)``."""
    metric = logit_diff_metric(answer, foil)
    seq = len(clean_ids)
    if positions == "all":
        res = activation_patching(lm, clean_ids, corrupt_ids, component="resid_pre", metric=metric)
        return res.effect, res.clean_metric, res.corrupt_metric, list(range(seq))
    if positions not in PATCH_POSITIONS:
        raise InputError(f"unknown patch positions {positions!r}; choose one of {', '.join(PATCH_POSITIONS)}", field="patch_positions")
    if positions == "last":
        effect_last, clean_m, corrupt_m = last_position_patching(lm, clean_ids, corrupt_ids, metric)
        return effect_last.unsqueeze(1), clean_m, corrupt_m, [seq - 1]
    cols = list(range(seq - n_post, seq))
    clean, corrupt = record_pair(lm, clean_ids, corrupt_ids, ["resid_pre"])
    sites = [(layer, c) for layer in range(lm.n_layers) for c, pos in enumerate(cols)
             if not torch.equal(clean.acts[("resid_pre", layer)][pos], corrupt.acts[("resid_pre", layer)][pos])]
    rows = [[Patch(layer, "resid_pre", (cols[c],))] for layer, c in sites]
    values = replay(lm, corrupt, rows, {"source": clean.acts}, metric)
    clean_m, corrupt_m = float(metric(clean.last_logits)[0]), float(metric(corrupt.last_logits)[0])
    effect = torch.zeros(lm.n_layers, len(cols))
    for (layer, c), v in zip(sites, values.tolist(), strict=True):
        effect[layer, c] = v - corrupt_m
    return effect, clean_m, corrupt_m, cols


def summarise_profile(effect: torch.Tensor, clean_m: float, corrupt_m: float) -> dict[str, Any]:
    """Per-layer profile (signed effect at the strongest position), flips, peak and concentration."""
    strongest = effect.abs().argmax(dim=1)
    profile = effect.gather(1, strongest.unsqueeze(1)).squeeze(1)
    patched = corrupt_m + effect
    flips = ((torch.sign(patched) != torch.sign(torch.tensor(corrupt_m))) & (effect != 0)).any(dim=1)
    gap = clean_m - corrupt_m
    recovered = (profile / gap).tolist() if abs(gap) > 1e-6 else [float("nan")] * profile.numel()
    values = profile.tolist()
    return {"patch_profile": values, "patch_recovered": recovered, "peak_layer": int(profile.abs().argmax()),
            "n_flip_layers": int(flips.sum()), "gini": gini(values), "top5_concentration": top_k_concentration(values, 5)}


def _no_profile(n_layers: int) -> dict[str, Any]:
    nan = float("nan")
    return {"patch_profile": [nan] * n_layers, "patch_recovered": [nan] * n_layers, "peak_layer": -1,
            "n_flip_layers": 0, "gini": nan, "top5_concentration": nan}


def analyse_pair(lm: LoadedModel, pair: DilemmaPair, *, chat: bool = True, positions: str = "last",
                 unembed: Unembedder | None = None) -> PairAnalysis:
    """Analyse one dilemma pair (see the module docstring for every quantity)."""
    start = time.perf_counter()
    ue = unembed or Unembedder.from_model(lm)
    eth, other = option_ids(lm, pair)
    base_ids, n_post = encode_one(lm.tokenizer, pair.base.prompt, chat=chat)
    cf_ids, _ = encode_one(lm.tokenizer, pair.counterfactual.prompt, chat=chat)
    a_id = eth  # the base prompt's answer token is the letter of its ethical option
    cf_eth = single_token_id(lm.tokenizer, pair.counterfactual.ethical_option)
    cf_other = other if cf_eth == eth else eth
    parts_b = residual_parts(lm, base_ids)
    dla_b = attribute_parts(parts_b, ue, eth, other)
    dla_c = attribute_parts(residual_parts(lm, cf_ids), ue, cf_eth, cf_other)
    if len(base_ids) == len(cf_ids):
        effect, clean_m, corrupt_m, cols = patch_profile(lm, base_ids, cf_ids, a_id, other, positions, n_post)
        profile = summarise_profile(effect, clean_m, corrupt_m)
    else:  # the swap changed the token count: positions do not align, so there is no patching profile
        log.warning("pair %s: base and counterfactual tokenise to %d and %d tokens; no patching profile",
                    pair.id, len(base_ids), len(cf_ids))
        cols, profile = [], _no_profile(lm.n_layers)
    # resid_post of every layer is the running sum of the parts, so the lens needs no extra forward pass
    resid = parts_b.embed + torch.cumsum(parts_b.attn + parts_b.mlp, dim=0)
    probs = torch.softmax(lens_logits(lm, resid.to(lm.device), unembed=ue).float(), dim=-1).cpu()
    margin_b, margin_c = dla_b.logit_diff, dla_c.logit_diff
    return PairAnalysis(
        id=pair.id, category=pair.category, margin_base=margin_b, margin_cf=margin_c,
        chose_ethical_base=margin_b > 0, chose_ethical_cf=margin_c > 0,
        content=(margin_b + margin_c) / 2, letter_bias=(margin_b - margin_c) / 2 if cf_eth != eth else float("nan"),
        **profile, patch_positions=cols,
        dla_embed=(dla_b.embed + dla_c.embed) / 2, dla_attn=((dla_b.attn + dla_c.attn) / 2).tolist(),
        dla_mlp=((dla_b.mlp + dla_c.mlp) / 2).tolist(),
        dla_error=max(abs(dla_b.total() - margin_b), abs(dla_c.total() - margin_c)),
        lens_prob_ethical=probs[:, eth].tolist(), lens_prob_other=probs[:, other].tolist(),
        seconds=time.perf_counter() - start,
    )
