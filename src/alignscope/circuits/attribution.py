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

Weights are frozen for the duration (scoped), so the backward pass computes activation
gradients only. :func:`faithfulness` compares an estimate with real activation patching.

Example:
    >>> est = attribution_patching(lm, clean_ids, corrupt_ids, metric=m, ig_steps=8)   # doctest: +SKIP
    >>> faithfulness(activation_result, est)["pearson"]                               # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from alignscope.circuits.patching import PatchingResult, record_pair, validate_options
from alignscope.circuits.replay import RunRecord, forward_from
from alignscope.errors import InputError
from alignscope.metrics import Metric
from alignscope.models.loader import LoadedModel
from alignscope.sites import Site
from alignscope.stats import pearson, spearman, top_k_overlap


@contextmanager
def frozen_weights(model: torch.nn.Module) -> Iterator[None]:
    """Turn off ``requires_grad`` on every parameter; restore each flag on exit."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def ig_alphas(ig_steps: int) -> torch.Tensor:
    """Interpolation points: ``[0]`` for the plain gradient, else the ``ig_steps`` midpoints ``(i + 1/2) / ig_steps``."""
    if ig_steps < 0:
        raise InputError(f"ig_steps must be >= 0 (0: plain gradient x delta), got {ig_steps}", field="ig_steps")
    return torch.zeros(1) if ig_steps == 0 else (torch.arange(ig_steps, dtype=torch.float32) + 0.5) / ig_steps


def mean_gradients(lm: LoadedModel, target: RunRecord, source: RunRecord, components: Sequence[str],
                   metric: Metric, ig_steps: int, *, max_batch_tokens: int = 4096) -> dict[tuple[str, int], torch.Tensor]:
    """Mean gradient of ``metric`` w.r.t. each component at each layer along the interpolation path.

    Returns:
        ``(component, layer) -> (seq, width)`` gradients (``head``: ``(seq, n_heads, d_head)``).
    """
    alphas = ig_alphas(ig_steps).to(target.resid_pre.device)
    per_chunk = max(1, max_batch_tokens // target.seq_len)
    sums: dict[tuple[str, int], torch.Tensor] = {}
    start0, end0 = target.resid_pre[0], source.resid_pre[0]
    with frozen_weights(lm.hf_model), torch.enable_grad():
        for i in range(0, len(alphas), per_chunk):
            a = alphas[i:i + per_chunk].to(start0.dtype)
            hidden = (start0 + a[:, None, None] * (end0 - start0)).requires_grad_(True)

            def run(h: torch.Tensor = hidden) -> None:
                metric(forward_from(lm, target, h, 0)).sum().backward()

            grabbed = grab_activations(lm, components, run)
            for key, act in grabbed.items():
                grad = act.grad.sum(0) if act.grad is not None else torch.zeros_like(act[0])
                sums[key] = sums.get(key, 0) + grad.detach()  # type: ignore[assignment, operator]
    out = {}
    for key, total in sums.items():
        g = total / len(alphas)
        out[key] = g.reshape(target.seq_len, lm.n_heads, -1) if key[0] == "head" else g
    return out


def grab_activations(lm: LoadedModel, components: Sequence[str], run: Any,
                     extra_hooks: Sequence[str] = ()) -> dict[tuple[str, int], torch.Tensor]:
    """Call ``run()`` with hooks that keep (and retain gradients of) each component's output.

    Hook points are identities that return their input tensor itself, so a component's gradient
    covers every consumer of that tensor. ``extra_hooks`` are instead isolated: the hook returns
    a copy, so its gradient counts only the paths through the hook point's own consumer (e.g.
    ``blocks.3.ln1.hook_in``: through layer 3's attention, not the residual connection).

    Returns:
        ``(component, layer) -> activation``, plus ``(hook_name, -1)`` for each of ``extra_hooks``.
    """
    grabbed: dict[tuple[str, int], torch.Tensor] = {}
    handles = []

    def keep(key: tuple[str, int], isolate: bool) -> Any:
        def hook(_m: torch.nn.Module, _i: Any, out: torch.Tensor) -> torch.Tensor | None:
            if isolate:
                out = out.clone()
            if out.requires_grad:
                out.retain_grad()
            grabbed[key] = out
            return out if isolate else None
        return hook

    for comp in components:
        for layer in range(lm.n_layers):
            name = Site(layer, comp).validate(lm).hook_name
            handles.append(lm.bridge.hook_dict[name].register_forward_hook(keep((comp, layer), False)))
    for name in extra_hooks:
        handles.append(lm.bridge.hook_dict[name].register_forward_hook(keep((name, -1), True)))
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return grabbed


def attribution_patching_all(
    lm: LoadedModel,
    clean_ids: Sequence[int],
    corrupt_ids: Sequence[int],
    *,
    components: Sequence[str] = ("resid_pre",),
    metric: Metric,
    direction: str = "denoise",
    ig_steps: int = 8,
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
    start = time.perf_counter()
    clean, corrupt = record_pair(lm, clean_ids, corrupt_ids, list(components))
    target, source = (corrupt, clean) if direction == "denoise" else (clean, corrupt)
    grads = mean_gradients(lm, target, source, components, metric, ig_steps, max_batch_tokens=max_batch_tokens)
    clean_metric = float(metric(clean.last_logits)[0])
    corrupt_metric = float(metric(corrupt.last_logits)[0])
    seconds = time.perf_counter() - start
    tokens = [str(t) for t in lm.tokenizer.convert_ids_to_tokens(list(clean_ids))]
    method = "attribution-ig" if ig_steps else "attribution"
    out = {}
    for comp in components:
        per_layer = []
        for layer in range(lm.n_layers):
            delta = (source.acts[(comp, layer)] - target.acts[(comp, layer)]).float()
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
    ig_steps: int = 8,
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
