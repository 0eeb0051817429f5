"""Conditional activation steering (CAST-style): steer only the prompts a condition probe flags.

On the first forward pass of a sequence (an empty KV cache), a :class:`~alignscope.steering.probes.LinearProbe`
reads the residual stream at its layers, pooling *real* tokens of each prompt (the last few, or
the user's message; the attention mask is taken from the model call, so left padding is never
read). A row
whose score exceeds ``threshold`` is gated on: ``coefficient * vector`` is added at
``layers`` to every position of that row, on the prompt pass and on every cached decoding
step. The per-row gate is kept across decoding steps and recomputed when a new sequence starts
(the next call with an empty cache), so each ``generate`` call starts fresh.

With ``off="ablate"`` the rows whose gate does *not* fire get the opposite treatment: the unit
direction of ``vector`` is projected out of ``resid_pre``, ``attn_out`` and ``mlp_out`` at every
layer (directional ablation), so a refusal vector both adds refusal where the condition holds
and removes the model's own refusals elsewhere (over-refusal of harmless prompts).

When every steered layer comes at or after the deepest probe read, the gate is computed in the
same prompt pass, just before it is first used. When some steered layer comes earlier (the best
condition is often read deeper than the best place to steer), the gate is computed by a
*look-ahead*: at the start of each sequence a partial forward pass over the prompt, stopped after
the deepest probe layer and with no cache, reads the probe; then the real pass runs with the gate
known. The look-ahead costs a fraction of one prompt pass per ``generate`` call, and nothing per
decoding step.

``apply(lm, target=...)`` puts the hooks on another :class:`~alignscope.hooks.backends.HookTarget`
(e.g. the native twin): the sequence-start hook on ``target.root``, the probe reads and additions
on the target's hook points, and the look-ahead through ``target.run_prefix``.

The intervention is a composition: a :class:`ProbeGate` (the probe reads, which decide a
per-row gate held in a :class:`GateHandle`), an
:class:`~alignscope.steering.interventions.ActivationAddition` whose writes are kept in the rows
where the gate is on, and optionally a
:class:`~alignscope.steering.interventions.DirectionalAblation` whose writes are kept where it is
off (:func:`gated`). Each part's hooks are the part's own.

Limitation: ``generate(..., use_cache=False)`` re-runs the whole sequence each step, so each
step would be a new sequence and the probe would read generated tokens; use the KV cache (the
default).

Example:
    >>> steer = ConditionalSteering(probe, refusal_vec, layers=(14,), coefficient=6.0, threshold=0.5)  # doctest: +SKIP
    >>> with steer.apply(lm) as handle:                                                         # doctest: +SKIP
    ...     out = lm.hf_model.generate(ids, attention_mask=mask, max_new_tokens=32)
    >>> handle.gate                                                                             # doctest: +SKIP
    tensor([1., 0.])
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from jaxtyping import Float

from alignscope.errors import InputError
from alignscope.hooks.backends import HookTarget
from alignscope.hooks.handle import HookHandle
from alignscope.hooks.writes import HookFn
from alignscope.models.hf_compat import cache_in_call, cache_length
from alignscope.models.loader import LoadedModel
from alignscope.sites import Site
from alignscope.steering.interventions import (
    ActivationAddition,
    DirectionalAblation,
    FieldReader,
    HookIntervention,
    StartHook,
    check_fits,
    check_vector,
)
from alignscope.steering.probes import LinearProbe, Pooling, pool_tokens, probe_features

# Order of hook points inside one block, to check that the gate is known before it is used.
_ORDER = {"resid_pre": 0, "attn_out": 1, "resid_mid": 2, "mlp_out": 3, "resid_post": 4}
OFF_MODES = ("none", "ablate")


class GateHandle(HookHandle):
    """Hook handle that also holds the gate: the last sequence's probe scores and per-row gate (on CPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.mask: torch.Tensor | None = None
        self.feats: dict[int, torch.Tensor] = {}
        self.scores: torch.Tensor | None = None
        self.gate: torch.Tensor | None = None
        self._on: torch.Tensor | None = None
        self.busy = False

    def reset(self, mask: torch.Tensor | None) -> None:
        """Forget the previous sequence's state (a new sequence begins)."""
        self.mask, self.feats, self.scores, self.gate, self._on = mask, {}, None, None, None

    def decide(self, scores: torch.Tensor, threshold: float) -> None:
        """Set this sequence's gate from the probe scores: on where ``score > threshold``."""
        self.scores = scores.detach().cpu()
        self._on = scores > threshold
        self.gate = self._on.float().cpu()

    def rows_on(self, act: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, ...)`` bool: which rows of ``act`` the gate turned on.

        Raises:
            RuntimeError: a gated write ran before the gate was computed (a bug in the hook order).
            InputError: the batch size changed within one sequence (beam search).
        """
        if self._on is None:
            raise RuntimeError("conditional steering: the gate was not computed before a steered layer ran")
        if self._on.shape[0] != act.shape[0]:
            raise InputError(f"batch size changed from {self._on.shape[0]} to {act.shape[0]} within one sequence "
                             "(beam search is not supported)", field="batch")
        return self._on.to(act.device).view(-1, *([1] * (act.ndim - 1)))


def gated(fn: HookFn, handle: GateHandle, *, on: bool) -> HookFn:
    """``fn``'s write, kept only in the rows where the gate is ``on`` (or off); the look-ahead pass writes nothing."""

    def hook(module: torch.nn.Module, inputs: Any, act: torch.Tensor) -> torch.Tensor | None:
        if handle.busy:  # the look-ahead pass only reads
            return None
        new = fn(module, inputs, act)
        if new is None:
            return None
        rows = handle.rows_on(act)
        return torch.where(rows if on else ~rows, new, act)

    return hook


@dataclass(frozen=True, eq=False)
class ProbeGate:
    """The condition: a probe read on a sequence's prompt pass, on where its score exceeds ``threshold``.

    It writes nothing; it fills a :class:`GateHandle` that the gated writes read.
    """

    probe: LinearProbe
    threshold: float = 0.0

    def read_hooks(self, handle: GateHandle) -> list[tuple[Site, HookFn]]:
        """Hooks that pool the probe's layers while the gate is unknown, then score and decide."""
        probe, n_read = self.probe, len(self.probe.layers)

        def read(layer: int) -> HookFn:
            def hook(_m: torch.nn.Module, _i: Any, out: torch.Tensor) -> None:
                if handle.gate is not None:
                    return
                handle.feats[layer] = pool_tokens(out, handle.mask, probe.pooling)
                if len(handle.feats) == n_read:
                    handle.decide(probe.score(torch.stack([handle.feats[x] for x in probe.layers], dim=1)), self.threshold)
            return hook

        return [(Site(x, probe.component), read(x)) for x in dict.fromkeys(probe.layers)]

    def start_hook(self, target: HookTarget, handle: GateHandle, lookahead: bool) -> StartHook:
        """The sequence-start pre-hook: resets the gate and, with ``lookahead``, reads the probe by a partial pass on ``target``."""
        stop = max(self.probe.layers) + 1

        def pre(_m: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if handle.busy or cache_length(cache_in_call(kwargs)) != 0:
                return
            mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
            mask = mask if isinstance(mask, torch.Tensor) and mask.ndim == 2 else None
            handle.reset(mask)
            if lookahead:
                ids = kwargs.get("input_ids", args[0] if args else None)
                if not isinstance(ids, torch.Tensor) or ids.is_floating_point():
                    raise InputError("conditional steering with a look-ahead needs token ids (not inputs_embeds)", field="input")
                handle.busy = True
                try:
                    with torch.no_grad():
                        target.run_prefix(ids, mask, stop)
                finally:
                    handle.busy = False
        return pre


@dataclass(frozen=True, eq=False)
class ConditionalSteering(HookIntervention[GateHandle]):
    """Add ``coefficient * vector`` at ``layers`` only for prompts whose probe score exceeds ``threshold``.

    It is composed of three parts: the :attr:`gate` (a :class:`ProbeGate`), the :attr:`addition`
    (an :class:`~alignscope.steering.interventions.ActivationAddition` kept in the rows where the
    gate is on) and the optional :attr:`off_branch` (a
    :class:`~alignscope.steering.interventions.DirectionalAblation` kept where it is off).

    Args:
        probe: the condition (its layers, component and pooling say what it reads).
        vector: ``(d_model,)`` behaviour vector.
        layers: layers to steer at (any earlier than the deepest probe read turns on the look-ahead pass).
        coefficient: scale of the addition.
        threshold: the gate fires where ``probe score > threshold``.
        component: where the vector is added (default ``resid_pre``).
        off: what happens where the gate does not fire: ``none`` (nothing) or ``ablate``
            (directional ablation of the vector's direction at every layer; needs the look-ahead).
    """

    kind: ClassVar[str] = "conditional"
    probe: LinearProbe
    vector: Float[torch.Tensor, " d_model"]
    layers: tuple[int, ...]
    coefficient: float = 1.0
    threshold: float = 0.0
    component: str = "resid_pre"
    off: str = "none"

    def __post_init__(self) -> None:
        if self.off not in OFF_MODES:
            raise InputError(f"unknown off branch {self.off!r}; expected one of {', '.join(OFF_MODES)}", field="off")
        object.__setattr__(self, "vector", check_vector(self.vector, "vector"))
        object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))
        if self.component not in _ORDER or self.probe.component not in _ORDER:
            raise InputError(f"components must be one of {', '.join(_ORDER)}", field="component")
        if not self.layers:
            raise InputError("no layers given", field="layers")

    @property
    def gate(self) -> ProbeGate:
        """The condition."""
        return ProbeGate(self.probe, self.threshold)

    @property
    def addition(self) -> ActivationAddition:
        """What is added where the gate is on."""
        return ActivationAddition(self.vector, self.layers, self.coefficient, self.component)

    @property
    def off_branch(self) -> DirectionalAblation | None:
        """What is done where the gate is off: ablation of the vector's direction at every layer, or nothing."""
        return DirectionalAblation(self.vector) if self.off == "ablate" else None

    @property
    def lookahead(self) -> bool:
        """Whether the gate needs a look-ahead pass (some steered layer precedes the deepest probe read)."""
        last_read = (max(self.probe.layers), _ORDER[self.probe.component])
        edited = [(x, _ORDER[self.component]) for x in self.layers]
        if self.off == "ablate":
            edited.append((0, _ORDER["resid_pre"]))  # the off branch edits from the first layer on
        return any(site < last_read for site in edited)

    def validate(self, lm: LoadedModel) -> None:
        self.addition.validate(lm)
        check_fits(lm, self.probe.weight[0], self.probe.layers, (self.probe.component,), "probe_weight")
        if (off := self.off_branch) is not None:
            off.validate(lm)

    def new_handle(self) -> GateHandle:
        """A :class:`GateHandle`: the per-sequence gate state the hooks share, and the last gate read back."""
        return GateHandle()

    def start_hooks(self, target: HookTarget, handle: GateHandle) -> list[StartHook]:
        """The gate's sequence-start pre-hook (reset, and the look-ahead where needed)."""
        return [self.gate.start_hook(target, handle, self.lookahead)]

    def hooks(self, lm: LoadedModel, handle: GateHandle) -> list[tuple[Site, HookFn]]:
        """The gate's probe reads, then the addition where it is on, then the off branch where it is off."""
        on = [(site, gated(fn, handle, on=True)) for site, fn in self.addition.hooks(lm, handle)]
        off_branch = self.off_branch
        off = [] if off_branch is None else [(site, gated(fn, handle, on=False)) for site, fn in off_branch.hooks(lm, handle)]
        return self.gate.read_hooks(handle) + on + off

    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        p = self.probe
        meta = {"layers": json.dumps(list(self.layers)), "coefficients": json.dumps([float(self.coefficient)]),
                "threshold": repr(float(self.threshold)), "component": self.component,
                "probe_layers": json.dumps(list(p.layers)), "probe_bias": repr(p.bias), "probe_component": p.component,
                "probe_method": p.method, "off": self.off, **p.pooling.to_meta()}
        return {"vector": self.vector, "probe_weight": p.weight}, meta

    @classmethod
    def from_reader(cls, r: FieldReader) -> ConditionalSteering:
        """Rebuild from a loaded intervention file (see :func:`~alignscope.steering.intervention_io.load_intervention`)."""
        pooling = Pooling(r.text("probe_pool", "tail"), int(r.number("probe_n_read")), int(r.number("probe_skip_head")),
                          int(r.number("probe_skip_tail")))
        probe = LinearProbe(r.tensor("probe_weight", ndim=2), r.number("probe_bias"), r.layers("probe_layers"),
                            r.text("probe_component", "resid_pre"), pooling, r.text("probe_method", "logistic"))
        off = r.text("off", "none")
        if off not in OFF_MODES:
            raise InputError(f"unknown off branch {off!r}; expected one of {', '.join(OFF_MODES)}", path=r.path, field="off")
        return cls(probe, r.tensor("vector"), r.layers(), r.number("coefficients"), r.number("threshold"),
                   r.text("component", "resid_pre"), off)


def gate_scores(lm: LoadedModel, steer: ConditionalSteering, prompts: Sequence[str], *, chat: bool = True,
                batch_size: int = 16) -> tuple[Float[torch.Tensor, " n"], Float[torch.Tensor, " n"]]:
    """Probe scores and gate values (1 = steer) of ``prompts``, as the hooks would compute them on a prompt pass.

    Reads the unsteered residual stream (what the look-ahead or same-pass read sees) through
    :func:`~alignscope.steering.probes.probe_features`, so the result can be compared with
    refusals to tell a gate that did not fire from a steer that did not work.
    """
    p = steer.probe
    feats = probe_features(lm, list(prompts), p.layers, component=p.component, pooling=p.pooling, chat=chat, batch_size=batch_size)
    scores = p.score(feats)
    return scores, (scores > steer.threshold).float()
