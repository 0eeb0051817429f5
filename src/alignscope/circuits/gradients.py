"""Gradients along the straight path between two prompts' input embeddings, in one batched pass.

The residual entering block 0 is interpolated from the target prompt's to the source prompt's;
each interpolation point is one row of a batch run through the model (the bridge, with a scoped
hook that swaps in the interpolated input). The same batch carries the two end points, so one
forward and one backward pass give:

* the target run's activations (alpha = 0) and metric;
* the source run's activations (alpha = 1) and metric;
* the mean gradient of the metric over the gradient rows: alpha = 0 alone (plain attribution)
  or the ``N`` midpoints ``(i + 1/2)/N`` (integrated gradients, EAP-IG style).

Weights are frozen while it runs (scoped), so the backward pass computes activation gradients only.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from alignscope.circuits.replay import embed_input, validate_components
from alignscope.errors import InputError
from alignscope.hooks.backends import BridgeTarget
from alignscope.hooks.handle import HookHandle
from alignscope.hooks.points import hook_table
from alignscope.hooks.read import reading
from alignscope.metrics import Metric
from alignscope.models.loader import LoadedModel
from alignscope.sites import Site

Key = tuple[str, int]


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
    """Gradient points: ``[0]`` for the plain gradient, else the ``ig_steps`` midpoints ``(i + 1/2) / ig_steps``."""
    if ig_steps < 0:
        raise InputError(f"ig_steps must be >= 0 (0: plain gradient x delta), got {ig_steps}", field="ig_steps")
    return torch.zeros(1) if ig_steps == 0 else (torch.arange(ig_steps, dtype=torch.float32) + 0.5) / ig_steps


def grab_activations(lm: LoadedModel, components: Sequence[str], run: Any,
                     extra_hooks: Sequence[str] = ()) -> dict[Key, torch.Tensor]:
    """Call ``run()`` with hooks that keep (and retain gradients of) each component's output.

    Hook points are identities that return their input tensor itself, so a component's gradient
    covers every consumer of that tensor. ``extra_hooks`` are instead isolated: the hook returns
    a copy, so its gradient counts only the paths through the hook point's own consumer (e.g.
    ``blocks.3.ln1.hook_in``: through layer 3's attention, not the residual connection).

    Returns:
        ``(component, layer) -> activation``, plus ``(hook_name, -1)`` for each of ``extra_hooks``.
    """
    validate_components(lm, components)
    table = hook_table(lm)
    sites = [Site(layer, comp) for comp in components for layer in range(lm.n_layers)]
    with reading(lm, sites, select=_keep_grad, convert=False, table=table) as acts, \
            reading(lm, extra_hooks, select=_keep_grad, convert=False, isolate=True, table=table) as isolated:
        run()
    grabbed: dict[Key, torch.Tensor] = {(site.component, site.layer): act for site, act in acts.items()}
    grabbed.update({(name, -1): act for name, act in isolated.items()})
    return grabbed


def _keep_grad(_point: object, act: torch.Tensor) -> torch.Tensor:
    """Keep the activation itself, asking autograd to fill its ``.grad``."""
    if act.requires_grad:
        act.retain_grad()
    return act


@dataclass(frozen=True)
class PathRun:
    """What one interpolation pass yields (see the module docstring).

    Attributes:
        grads: key -> ``(seq, width)`` mean gradient over the gradient rows.
        target_acts: key -> ``(seq, width)`` activations of the target run (alpha = 0).
        source_acts: key -> ``(seq, width)`` activations of the source run (alpha = 1).
        target_embed: ``(seq, d_model)`` residual entering block 0, target prompt.
        source_embed: ``(seq, d_model)`` the same for the source prompt.
        target_metric: metric of the target run.
        source_metric: metric of the source run.

    Keys are ``(component, layer)``, and ``(hook_name, -1)`` for extra hooks; ``head`` entries
    are ``(seq, n_heads, d_head)``.
    """

    grads: dict[Key, torch.Tensor]
    target_acts: dict[Key, torch.Tensor]
    source_acts: dict[Key, torch.Tensor]
    target_embed: torch.Tensor
    source_embed: torch.Tensor
    target_metric: float
    source_metric: float


def path_gradients(lm: LoadedModel, target_ids: Sequence[int], source_ids: Sequence[int], components: Sequence[str],
                   metric: Metric, ig_steps: int, *, extra_hooks: Sequence[str] = (), max_batch_tokens: int = 4096) -> PathRun:
    """One batched forward and backward pass over the interpolation path (see the module docstring)."""
    target_embed, source_embed = embed_input(lm, target_ids), embed_input(lm, source_ids)
    alphas = torch.cat([torch.tensor([0.0, 1.0]), ig_alphas(ig_steps) if ig_steps else torch.zeros(0)])
    weights = torch.tensor([1.0 if ig_steps == 0 else 0.0, 0.0] + [1.0] * ig_steps)
    seq = len(target_ids)
    per_chunk = max(3, max_batch_tokens // seq)
    sums: dict[Key, torch.Tensor] = {}
    ends: dict[int, dict[Key, torch.Tensor]] = {0: {}, 1: {}}
    metrics: list[float] = []
    with frozen_weights(lm.hf_model), torch.enable_grad():
        for i in range(0, len(alphas), per_chunk):
            a = alphas[i:i + per_chunk].to(target_embed.device, target_embed.dtype)
            w = weights[i:i + per_chunk].to(target_embed.device)
            hidden = (target_embed + a[:, None, None] * (source_embed - target_embed)).requires_grad_(True)
            values = _run_rows(lm, target_ids, hidden, components, extra_hooks, metric, w)
            for key, act in values["acts"].items():
                grad = act.grad if act.grad is not None else torch.zeros_like(act)
                sums[key] = sums.get(key, 0) + (grad * w.to(grad.dtype).view(-1, *[1] * (grad.ndim - 1))).sum(0)  # type: ignore[assignment, operator]
                if i == 0:
                    ends[0][key], ends[1][key] = act[0].detach(), act[1].detach()
            metrics += values["metric"].tolist()
    n_grad = float(weights.sum())
    shaped = {key: _shape(lm, key, total / n_grad, seq) for key, total in sums.items()}
    return PathRun(shaped, {k: _shape(lm, k, v, seq) for k, v in ends[0].items()}, {k: _shape(lm, k, v, seq) for k, v in ends[1].items()},
                   target_embed, source_embed, metrics[0], metrics[1])


def _shape(lm: LoadedModel, key: Key, value: torch.Tensor, seq: int) -> torch.Tensor:
    return value.detach().reshape(seq, lm.n_heads, -1) if key[0] == "head" else value.detach()


def _run_rows(lm: LoadedModel, ids: Sequence[int], hidden: torch.Tensor, components: Sequence[str], extra_hooks: Sequence[str],
              metric: Metric, weights: torch.Tensor) -> dict[str, Any]:
    """Run the rows of ``hidden`` (the residual entering block 0) and backpropagate the weighted metric."""
    batch = torch.tensor([list(ids)], device=lm.device).expand(hidden.shape[0], -1)
    out: dict[str, Any] = {}
    extra = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(lm.hf_model.forward).parameters else {}

    def run() -> None:
        logits = lm.bridge(batch, attention_mask=torch.ones_like(batch), use_cache=False, **extra)
        m = metric(logits[:, -1:])
        out["metric"] = m.detach().float().cpu()
        if bool((weights > 0).any()):
            (m * weights.to(m.dtype)).sum().backward()

    with HookHandle() as swap:
        swap.add(BridgeTarget(lm).register(Site(0, "resid_pre"), lambda _m, _i, _o: hidden))
        out["acts"] = grab_activations(lm, components, run, extra_hooks)
    return out
