"""Base-vs-aligned deltas: how alignment training (or an intervention) moved the hidden states, layer by layer.

For two models that share a tokenizer (a base model and its aligned sibling, or one model with
and without a saved intervention), :func:`model_deltas` computes each text's mean hidden state
over its real tokens, at every layer, in each model, for the *chosen* and the *rejected* texts of
a preference set (e.g. HH-RLHF). It reports per layer:

* ``delta_chosen = mean_aligned(chosen) - mean_base(chosen)`` (and the same for rejected), a
  candidate steering vector from what tuning changed (means over every token of every text);
* the cosine similarity between the two models' mean states, and the norms of each mean and delta;
* the SVD of the per-text differences (each text's mean state in the aligned model minus the
  base model's, chosen and rejected texts together, not centred), with component ``k``
  selectable and the fraction of the differences' energy it explains (``explained_variance``).

The hidden states of each model are read once per text set through
:func:`~alignscope.activations.prompt_means.cached_prompt_means` when a ``cache_dir`` is given,
so a rerun does no forward pass. :func:`model_states` reads one model's states (a sweep loads
one model at a time); :func:`deltas_from_states` combines two models' states.

Example:
    >>> d = model_deltas(base_lm, instruct_lm, chosen_texts, rejected_texts)   # doctest: +SKIP
    >>> d.cosine_chosen.shape                                                  # doctest: +SKIP
    torch.Size([30])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float

from alignscope.activations.prompt_means import PromptMeans, cached_prompt_means, prompt_means
from alignscope.errors import InputError
from alignscope.io import tensors_digest
from alignscope.models.loader import LoadedModel
from alignscope.steering.directions import SVDDirections, svd_directions
from alignscope.steering.interventions import HookIntervention, intervention_scope

MIN_COMPONENTS = 5
"""The SVD keeps at least this many components (fewer when there are fewer texts)."""


def mean_states(
    lm: LoadedModel, texts: Sequence[str], *, component: str = "resid_post", layers: Sequence[int] | None = None,
    chat: bool = False, batch_size: int = 8, progress: bool = False,
) -> tuple[Float[torch.Tensor, "n_layers d_model"], int]:
    """Mean activation over every real token of ``texts``, per layer, and the token count."""
    pm = prompt_means(lm, texts, component=component, layers=layers, chat=chat, batch_size=batch_size, progress=progress)
    return pm.token_mean(), pm.n_tokens


@dataclass(frozen=True, eq=False)
class ModelDeltas:
    """Per-layer comparison of two models' mean hidden states on chosen and rejected texts.

    All tensors are indexed by layer (``(n_layers,)`` or ``(n_layers, d_model)``); ``svd`` holds
    the SVD of the per-text differences and ``svd_k`` the component reported.
    """

    layers: tuple[int, ...]
    component: str
    mean_base_chosen: Float[torch.Tensor, "n_layers d_model"]
    mean_instruct_chosen: Float[torch.Tensor, "n_layers d_model"]
    mean_base_rejected: Float[torch.Tensor, "n_layers d_model"]
    mean_instruct_rejected: Float[torch.Tensor, "n_layers d_model"]
    n_tokens_chosen: int
    n_tokens_rejected: int
    svd: SVDDirections | None = None
    svd_k: int = 0

    @property
    def delta_chosen(self) -> Float[torch.Tensor, "n_layers d_model"]:
        """``aligned - base`` mean state on the chosen texts."""
        return self.mean_instruct_chosen - self.mean_base_chosen

    @property
    def delta_rejected(self) -> Float[torch.Tensor, "n_layers d_model"]:
        """``aligned - base`` mean state on the rejected texts."""
        return self.mean_instruct_rejected - self.mean_base_rejected

    @property
    def cosine_chosen(self) -> Float[torch.Tensor, " n_layers"]:
        """Cosine similarity of the two models' mean states on the chosen texts."""
        return torch.nn.functional.cosine_similarity(self.mean_base_chosen, self.mean_instruct_chosen, dim=-1)

    @property
    def cosine_rejected(self) -> Float[torch.Tensor, " n_layers"]:
        """Cosine similarity of the two models' mean states on the rejected texts."""
        return torch.nn.functional.cosine_similarity(self.mean_base_rejected, self.mean_instruct_rejected, dim=-1)

    def norms(self) -> dict[str, Float[torch.Tensor, " n_layers"]]:
        """Per-layer norms of every mean and delta."""
        return {"base_chosen": self.mean_base_chosen.norm(dim=-1), "instruct_chosen": self.mean_instruct_chosen.norm(dim=-1),
                "base_rejected": self.mean_base_rejected.norm(dim=-1),
                "instruct_rejected": self.mean_instruct_rejected.norm(dim=-1),
                "delta_chosen": self.delta_chosen.norm(dim=-1), "delta_rejected": self.delta_rejected.norm(dim=-1)}

    @property
    def delta_growth(self) -> Float[torch.Tensor, " n_layers"]:
        """Per layer, how much the chosen texts' delta norm grew over the layer before (the first layer: over zero)."""
        norm = self.delta_chosen.norm(dim=-1)
        return norm - torch.cat([norm.new_zeros(1), norm[:-1]])

    @property
    def peak_layer(self) -> int:
        """The layer where the chosen texts' delta norm grows the most: where the difference enters the residual stream."""
        return self.layers[int(self.delta_growth.argmax())]

    def explained_variance_k(self) -> list[float | None]:
        """Per layer, the fraction of the per-text differences' energy that SVD component ``svd_k`` explains."""
        if self.svd is None:
            return [None] * len(self.layers)
        return [float(x) for x in self.svd.explained_variance[:, self.svd_k]]

    def svd_vectors(self) -> Float[torch.Tensor, "n_layers d_model"]:
        """Component ``svd_k`` at every layer (unit vectors signed along the mean difference)."""
        if self.svd is None:
            raise InputError("these deltas were computed without the per-text SVD", field="svd")
        return self.svd.components[:, self.svd_k]

    def per_layer(self) -> list[dict[str, Any]]:
        """``[{layer, cosine_chosen, cosine_rejected, delta_norm_chosen, delta_norm_rejected, explained_variance_k}]``."""
        norms = self.norms()
        ev = self.explained_variance_k()
        return [{"layer": layer, "cosine_chosen": float(self.cosine_chosen[i]), "cosine_rejected": float(self.cosine_rejected[i]),
                 "delta_norm_chosen": float(norms["delta_chosen"][i]), "delta_norm_rejected": float(norms["delta_rejected"][i]),
                 "explained_variance_k": ev[i]} for i, layer in enumerate(self.layers)]

    def summary(self) -> dict[str, Any]:
        """``{component, svd_k, n_layers, n_tokens_chosen, n_tokens_rejected, peak_layer, per_layer}`` (see :meth:`per_layer`)."""
        return {"component": self.component, "svd_k": self.svd_k, "n_layers": len(self.layers),
                "n_tokens_chosen": self.n_tokens_chosen, "n_tokens_rejected": self.n_tokens_rejected,
                "peak_layer": self.peak_layer, "per_layer": self.per_layer()}

    def to_json(self) -> dict[str, Any]:
        """Per-layer curves (cosines and norms, and the SVD's explained variance when computed), JSON-ready."""
        out: dict[str, Any] = {
            "layers": list(self.layers), "component": self.component, "n_tokens_chosen": self.n_tokens_chosen,
            "n_tokens_rejected": self.n_tokens_rejected, "cosine_chosen": self.cosine_chosen.tolist(),
            "cosine_rejected": self.cosine_rejected.tolist(), "norms": {k: v.tolist() for k, v in self.norms().items()}}
        if self.svd is not None:
            out["svd_k"] = self.svd_k
            out["explained_variance"] = self.svd.explained_variance.tolist()
        return out


def check_shared_tokenizer(base: LoadedModel, instruct: LoadedModel) -> None:
    """Both models must share vocabulary and residual shape.

    Raises:
        InputError: different vocabularies, layer counts or widths; the message names both models.
    """
    check_same_vocab(base.name, base.tokenizer.get_vocab(), instruct.name, instruct.tokenizer.get_vocab())
    if (base.n_layers, base.d_model) != (instruct.n_layers, instruct.d_model):
        raise InputError(f"shapes differ: {base.name} has {base.n_layers} layers x {base.d_model}, "
                         f"{instruct.name} has {instruct.n_layers} x {instruct.d_model}", field="models")


def check_same_vocab(base_name: str, base_vocab: dict[str, int], aligned_name: str, aligned_vocab: dict[str, int]) -> None:
    """Raise an :class:`InputError` naming both models when their tokenizer vocabularies differ."""
    if base_vocab != aligned_vocab:
        raise InputError(f"{base_name} and {aligned_name} do not share a tokenizer vocabulary "
                         f"({len(base_vocab)} vs {len(aligned_vocab)} tokens); deltas need one tokenizer", field="models")


def intervention_key(intervention: HookIntervention | None) -> dict[str, str]:
    """What an intervention adds to the hidden-state cache key (its kind and the digest of its tensors and fields)."""
    if intervention is None:
        return {}
    tensors, meta = intervention.to_tensors()
    return {"intervention": f"{intervention.kind}:{tensors_digest(tensors, meta)}"}


def model_states(
    lm: LoadedModel, chosen: Sequence[str], rejected: Sequence[str], *, intervention: HookIntervention | None = None,
    cache_dir: str | Path | None = None, component: str = "resid_post", layers: Sequence[int] | None = None,
    chat: bool = False, batch_size: int = 8, progress: bool = False,
) -> tuple[PromptMeans, PromptMeans]:
    """Per-text mean states of ``lm`` (with ``intervention`` active, if any) on the chosen and the rejected texts.

    With ``cache_dir`` the states are read from (or stored to) the cache, keyed by the model's
    identity, the intervention and the texts.
    """
    if intervention is not None:
        intervention.validate(lm)
    kw: dict[str, Any] = {"component": component, "layers": layers, "chat": chat, "batch_size": batch_size, "progress": progress}
    with intervention_scope(lm, intervention):
        if cache_dir is None:
            return prompt_means(lm, chosen, **kw), prompt_means(lm, rejected, **kw)
        extra = intervention_key(intervention)
        return (cached_prompt_means(lm, chosen, cache_dir=cache_dir, extra_key=extra, **kw),
                cached_prompt_means(lm, rejected, cache_dir=cache_dir, extra_key=extra, **kw))


def deltas_from_states(base: tuple[PromptMeans, PromptMeans], aligned: tuple[PromptMeans, PromptMeans], *,
                       svd_k: int = 0) -> ModelDeltas:
    """Combine two models' ``(chosen, rejected)`` states (:func:`model_states`) into :class:`ModelDeltas`.

    Raises:
        InputError: the states differ in layers, component or text count, or ``svd_k`` is not below the text count.
    """
    (bc, br), (ac, ar) = base, aligned
    for b, a in ((bc, ac), (br, ar)):
        if b.layers != a.layers or b.component != a.component or b.means.shape != a.means.shape:
            raise InputError(f"the two models' states differ: {tuple(b.means.shape)} at layers {list(b.layers)} "
                             f"vs {tuple(a.means.shape)} at {list(a.layers)}", field="models")
    n_texts = bc.means.shape[0] + br.means.shape[0]
    if not 0 <= svd_k < n_texts:
        raise InputError(f"--svd-k {svd_k} must be between 0 and the number of texts minus one ({n_texts - 1})", field="svd_k")
    svd = svd_directions(torch.cat([ac.means, ar.means]), torch.cat([bc.means, br.means]),
                         k=max(svd_k + 1, MIN_COMPONENTS), center=False, layers=bc.layers)
    return ModelDeltas(bc.layers, bc.component, bc.token_mean(), ac.token_mean(), br.token_mean(), ar.token_mean(),
                       bc.n_tokens, br.n_tokens, svd, svd_k)


def model_deltas(
    base: LoadedModel,
    instruct: LoadedModel,
    chosen: Sequence[str],
    rejected: Sequence[str],
    *,
    component: str = "resid_post",
    layers: Sequence[int] | None = None,
    chat: bool = False,
    batch_size: int = 8,
    progress: bool = False,
    svd_k: int = 0,
    instruct_intervention: HookIntervention | None = None,
    cache_dir: str | Path | None = None,
) -> ModelDeltas:
    """Mean hidden states of both models on both text sets, per layer (see the module docstring).

    Args:
        base: the base model.
        instruct: the aligned model (same tokenizer and shape); may be ``base`` itself when
            ``instruct_intervention`` makes the difference.
        chosen: preferred texts (e.g. HH-RLHF ``chosen``).
        rejected: dispreferred texts.
        component: site component (default ``resid_post``).
        layers: layers to read (default all).
        chat: chat-format the texts (default: raw, as transcripts already carry their turns).
        batch_size: texts per forward pass.
        progress: progress bars on stderr.
        svd_k: the SVD component reported (0 = first).
        instruct_intervention: an intervention active while the aligned model runs.
        cache_dir: keep each model's hidden states here, so a rerun does no forward pass.
    """
    check_shared_tokenizer(base, instruct)
    kw: dict[str, Any] = {"component": component, "layers": layers, "chat": chat, "batch_size": batch_size,
                          "progress": progress, "cache_dir": cache_dir}
    return deltas_from_states(model_states(base, chosen, rejected, **kw),
                              model_states(instruct, chosen, rejected, intervention=instruct_intervention, **kw), svd_k=svd_k)
