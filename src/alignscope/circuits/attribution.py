"""Attribution patching: gradient estimates of every patching effect from a few backward passes.

The effect of patching site ``s`` (activation ``a_s``) from the source run into the target run
is estimated as ``(a_s^source - a_s^target) . g_s``, summed over the hidden axis, where ``g_s``
is a gradient of the metric with respect to ``a_s``:

* **plain** (``ig_steps=0``): the gradient on the target run itself, the linear
  approximation of Nanda's attribution patching. One forward and one backward pass.
* **integrated gradients** (``ig_steps=N``, EAP-IG style, Hanna et al. 2024): the mean
  gradient along the straight path from the target run's input embeddings to the source run's,
  at ``N`` midpoints ``(i + 1/2)/N``. The ``N`` interpolated runs are one batch, so this costs
  one batched forward and backward pass. Far more faithful where the model saturates.

Both runs are end points of the same batch (:mod:`alignscope.circuits.gradients`), so the whole
estimate is one batched forward and backward pass.

Weights are frozen for the duration (scoped), so the backward pass computes activation
gradients only. :func:`faithfulness` compares an estimate with real activation patching.

Example:
    >>> est = attribution_patching(lm, clean_ids, corrupt_ids, metric=m, ig_steps=5)   # doctest: +SKIP
    >>> faithfulness(activation_result, est)["pearson"]                               # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from alignscope.circuits.gradients import ig_alphas, path_gradients
from alignscope.circuits.pairs import check_aligned
from alignscope.circuits.patching import PatchingResult, validate_options
from alignscope.errors import InputError
from alignscope.metrics import Metric
from alignscope.models.loader import LoadedModel
from alignscope.stats import pearson, spearman, top_k_overlap


def attribution_patching_all(
    lm: LoadedModel,
    clean_ids: Sequence[int],
    corrupt_ids: Sequence[int],
    *,
    components: Sequence[str] = ("resid_pre",),
    metric: Metric,
    direction: str = "denoise",
    ig_steps: int = 5,
    per_position: bool = False,
    max_batch_tokens: int = 4096,
) -> dict[str, PatchingResult]:
    """Attribution estimates for several components from the same backward passes.

    Args:
        lm: the loaded model.
        clean_ids: token ids of the clean prompt.
        corrupt_ids: token ids of the corrupt prompt (same length).
        components: any of ``resid_pre``, ``resid_mid``, ``resid_post``, ``attn_out``, ``mlp_out``, ``head``.
        metric: maps last-position logits ``(batch, 1, vocab)`` to ``(batch,)``; must be differentiable.
        direction: ``denoise`` or ``noise`` (which run the patches would be written into).
        ig_steps: 0 for the plain gradient at the target run, N for integrated gradients with N steps.
        per_position: for ``head``, estimate each head at each position.
        max_batch_tokens: memory bound for one batched forward.

    Returns:
        Component -> :class:`PatchingResult` with ``method`` ``attribution`` or ``attribution-ig``;
        its ``effect`` has the shape activation patching gives.
    """
    for comp in components:
        validate_options(lm, comp, direction)
    ig_alphas(ig_steps)  # validates ig_steps before any compute
    start = time.perf_counter()
    check_aligned(lm.tokenizer, clean_ids, corrupt_ids)
    target_ids, source_ids = (corrupt_ids, clean_ids) if direction == "denoise" else (clean_ids, corrupt_ids)
    path = path_gradients(lm, target_ids, source_ids, components, metric, ig_steps, max_batch_tokens=max_batch_tokens)
    grads = path.grads
    clean_metric, corrupt_metric = ((path.source_metric, path.target_metric) if direction == "denoise"
                                    else (path.target_metric, path.source_metric))
    seconds = time.perf_counter() - start
    tokens = [str(t) for t in lm.tokenizer.convert_ids_to_tokens(list(clean_ids))]
    method = "attribution-ig" if ig_steps else "attribution"
    out = {}
    for comp in components:
        per_layer = []
        for layer in range(lm.n_layers):
            delta = (path.source_acts[(comp, layer)] - path.target_acts[(comp, layer)]).float()
            contrib = (delta * grads[(comp, layer)].float()).sum(-1)  # (seq,) or (seq, heads)
            if comp == "head":
                contrib = contrib.T if per_position else contrib.sum(0)
            per_layer.append(contrib.cpu())
        out[comp] = PatchingResult(comp, direction, torch.stack(per_layer), clean_metric, corrupt_metric, tokens, seconds,
                                   method=method, extra={"ig_steps": ig_steps})
    return out


def attribution_patching(
    lm: LoadedModel,
    clean_ids: Sequence[int],
    corrupt_ids: Sequence[int],
    *,
    component: str = "resid_pre",
    metric: Metric,
    direction: str = "denoise",
    ig_steps: int = 5,
    per_position: bool = False,
    max_batch_tokens: int = 4096,
) -> PatchingResult:
    """Attribution estimate of :func:`~alignscope.circuits.patching.activation_patching` for one component.

    See :func:`attribution_patching_all` for the arguments; ``seconds`` covers this component's sweep.
    """
    return attribution_patching_all(lm, clean_ids, corrupt_ids, components=[component], metric=metric, direction=direction,
                                    ig_steps=ig_steps, per_position=per_position, max_batch_tokens=max_batch_tokens)[component]


def faithfulness(reference: PatchingResult, estimate: PatchingResult, *, k: int = 10) -> dict[str, Any]:
    """How well an estimate reproduces real patching effects: correlations, top-k overlap and times.

    Returns:
        ``pearson``, ``spearman``, ``top_k_overlap`` (share of the reference's ``k`` largest-|effect|
        sites that the estimate also ranks in its top ``k``), ``k``, both times and their ratio.
    """
    if reference.effect.shape != estimate.effect.shape:
        raise InputError(f"effect shapes differ: {tuple(reference.effect.shape)} vs {tuple(estimate.effect.shape)}")
    ref = reference.effect.flatten().numpy().astype(float)
    est = estimate.effect.flatten().numpy().astype(float)
    return {
        "pearson": pearson(ref.tolist(), est.tolist()),
        "spearman": spearman(ref.tolist(), est.tolist()),
        "top_k_overlap": top_k_overlap(ref.tolist(), est.tolist(), k),
        "k": k,
        "max_abs_error": float(np.abs(ref - est).max()) if ref.size else 0.0,
        "reference_seconds": reference.seconds,
        "estimate_seconds": estimate.seconds,
        "time_ratio": estimate.seconds / reference.seconds if reference.seconds > 0 else float("nan"),
        "reference_method": reference.method,
        "estimate_method": estimate.method,
    }
