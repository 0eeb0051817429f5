"""Patching prompts of different lengths at the positions they share: the post-instruction tokens.

A harmful request and its harmless twin ("... a pipe bomb ..." / "... a bird feeder ...") need
not tokenise to the same length, so they cannot be compared position by position. Every
chat-formatted prompt ends with the same post-instruction tokens (the end of the user turn and
the start of the assistant turn: ``<|im_end|>\\n<|im_start|>assistant\\n``), which is where a
chat model decides whether to refuse. Patching writes the source run's activations at those
last ``n_shared`` positions into the target run and leaves every other position alone.

Each component is patched whole (``resid_pre``, ``attn_out``, ``mlp_out`` of a layer, or one
head's output ``z``) over the shared positions, through the replay engine
(:func:`~alignscope.circuits.replay.replay`: prefix reuse from the patched layer, staircase
batching). The effect is ``metric(patched target) - metric(target)``.

:func:`attribute_shared_suffix` is the fast first pass for big models: the gradient of the metric
on the target run times the source-minus-target activation over the shared positions (attribution
patching), for every component from one forward and one backward pass.

Example:
    >>> comps = study_components(lm, ("attn_out", "mlp_out", "head"))             # doctest: +SKIP
    >>> res = patch_shared_suffix(lm, harmless_ids, harmful_ids, 5, comps, metric)  # doctest: +SKIP
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from alignscope.circuits.ablation import Component
from alignscope.circuits.gradients import path_gradients
from alignscope.circuits.replay import ActKey, Patch, RunRecord, record_run, replay
from alignscope.errors import InputError
from alignscope.metrics import Metric
from alignscope.models.loader import LoadedModel

STUDY_KINDS = ("resid_pre", "attn_out", "mlp_out", "head")
_LABEL = re.compile(r"^(?P<comp>[a-z_]+)@L(?P<layer>\d+)(?:\.H(?P<head>\d+))?$")


def study_components(lm: LoadedModel, kinds: Sequence[str]) -> list[Component]:
    """Every component of ``kinds`` (whole layer outputs, or one per head), by layer, then in ``kinds`` order."""
    bad = [k for k in kinds if k not in STUDY_KINDS]
    if bad:
        raise InputError(f"unknown component kind {bad[0]!r}; choose from {', '.join(STUDY_KINDS)}", field="components")
    out: list[Component] = []
    for layer in range(lm.n_layers):
        for kind in kinds:
            if kind == "head":
                out.extend(Component("head", layer, h) for h in range(lm.n_heads))
            else:
                out.append(Component(kind, layer))
    return out


def parse_component(label: str, n_layers: int, n_heads: int, *, field: str = "component") -> Component:
    """``attn_out@L3``, ``mlp_out@L5``, ``resid_pre@L0`` or ``head@L3.H2`` as a :class:`Component`.

    Raises:
        InputError: a malformed label, an unknown kind, or a layer or head the model does not have.
    """
    m = _LABEL.match(label.strip())
    if m is None:
        raise InputError(f"cannot parse component {label!r}: expected e.g. attn_out@L3, mlp_out@L5 or head@L3.H2", field=field)
    comp, layer, head = m["comp"], int(m["layer"]), None if m["head"] is None else int(m["head"])
    if comp not in STUDY_KINDS:
        raise InputError(f"unknown component {comp!r} in {label!r}; choose from {', '.join(STUDY_KINDS)}", field=field)
    if (head is None) != (comp != "head"):
        raise InputError(f"{label!r}: a head index (.H<n>) goes with head and only with head", field=field)
    if not 0 <= layer < n_layers:
        raise InputError(f"{label!r}: layer {layer} does not exist; the model has layers 0..{n_layers - 1}", field=field)
    if head is not None and not 0 <= head < n_heads:
        raise InputError(f"{label!r}: head {head} does not exist; the model has heads 0..{n_heads - 1}", field=field)
    return Component(comp, layer, head)


def suffix_sources(target: RunRecord, source: RunRecord, keys: Sequence[ActKey], n_shared: int) -> dict[ActKey, torch.Tensor]:
    """The target run's activations with the last ``n_shared`` positions taken from the source run."""
    out: dict[ActKey, torch.Tensor] = {}
    for key in keys:
        value = target.acts[key].clone()
        value[-n_shared:] = source.acts[key][-n_shared:]
        out[key] = value
    return out


@dataclass(frozen=True)
class SuffixPatch:
    """Effects of patching each component over the shared suffix of one (target, source) pair.

    Attributes:
        effects: ``(n_components,)`` ``metric(patched target) - metric(target)``, in component order.
        target_metric: metric of the unpatched target run.
        source_metric: metric of the source run.
        n_shared: number of shared (post-instruction) positions patched.
        seconds: wall time.
    """

    effects: torch.Tensor
    target_metric: float
    source_metric: float
    n_shared: int
    seconds: float


def patch_shared_suffix(lm: LoadedModel, target_ids: Sequence[int], source_ids: Sequence[int], n_shared: int,
                        components: Sequence[Component], metric: Metric, *, max_batch_tokens: int = 4096) -> SuffixPatch:
    """Patch every component, one at a time, from the source run into the target run at the last ``n_shared`` positions.

    Raises:
        InputError: ``n_shared`` is not between 1 and the shorter prompt's length.
    """
    if not 1 <= n_shared <= min(len(target_ids), len(source_ids)):
        raise InputError(f"shared positions must be 1..{min(len(target_ids), len(source_ids))}, got {n_shared}", field="n_shared")
    start = time.perf_counter()
    kinds = sorted({c.component for c in components})
    target, source = record_run(lm, target_ids, kinds), record_run(lm, source_ids, kinds)
    keys = sorted({(c.component, c.layer) for c in components})
    seq = target.seq_len
    positions = tuple(range(seq - n_shared, seq))
    rows = [[Patch(c.layer, c.component, positions, c.head)] for c in components]
    values = replay(lm, target, rows, {"source": suffix_sources(target, source, keys, n_shared)}, metric,
                    max_batch_tokens=max_batch_tokens)
    base = float(metric(target.last_logits)[0])
    return SuffixPatch(values - base, base, float(metric(source.last_logits)[0]), n_shared, time.perf_counter() - start)


def attribute_shared_suffix(lm: LoadedModel, target_ids: Sequence[int], source_ids: Sequence[int], n_shared: int,
                            components: Sequence[Component], metric: Metric) -> torch.Tensor:
    """Attribution-patching estimates of :func:`patch_shared_suffix`'s effects, ``(n_components,)``.

    ``sum over the shared positions and the hidden axis of (a_source - a_target) * d metric / d a_target``.
    """
    if not 1 <= n_shared <= min(len(target_ids), len(source_ids)):
        raise InputError(f"shared positions must be 1..{min(len(target_ids), len(source_ids))}, got {n_shared}", field="n_shared")
    kinds = sorted({c.component for c in components})
    path = path_gradients(lm, target_ids, target_ids, kinds, metric, 0)
    source = record_run(lm, source_ids, kinds)
    out = []
    for c in components:
        key = (c.component, c.layer)
        prod = (source.acts[key][-n_shared:].float() - path.target_acts[key][-n_shared:].float()) * path.grads[key][-n_shared:].float()
        out.append(prod[:, c.head].sum() if c.head is not None else prod.sum())
    return torch.stack(out).cpu()


def patch_candidates(lm: LoadedModel, target_ids: Sequence[int], source_ids: Sequence[int], n_shared: int,
                     components: Sequence[Component], metric: Metric, candidates: int, *,
                     max_batch_tokens: int = 4096) -> tuple[torch.Tensor, torch.Tensor, SuffixPatch]:
    """Attribution first, then exact patching of the ``candidates`` largest ``|estimates|``.

    Returns:
        The effects (exact for the candidates, the estimate elsewhere), the estimates, and the exact run.
    """
    est = attribute_shared_suffix(lm, target_ids, source_ids, n_shared, components, metric)
    picked = torch.argsort(est.abs(), descending=True)[:candidates].tolist()
    exact = patch_shared_suffix(lm, target_ids, source_ids, n_shared, [components[i] for i in picked], metric,
                                max_batch_tokens=max_batch_tokens)
    effects = est.clone()
    effects[torch.tensor(picked)] = exact.effects.float()
    return effects, est, exact
