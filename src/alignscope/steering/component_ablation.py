"""Ablate chosen model components during generation (zero, mean or resampled values), on top of another intervention.

A component is a whole layer output (``attn_out``, ``mlp_out``, ``resid_pre``) or one attention
head (``head``, the per-head output ``z``), at every position. Its value is replaced by a fixed
vector (the ``(d_model,)`` mean or resampled activation; ``(d_head,)`` for a head) or by zeros.
With a unit ``direction`` for a component only its projection on that direction is replaced
(``x - ((x - value) . d) d``), and the rest of what it writes is kept.
``over`` is an intervention that stays active underneath (e.g. a planted refusal mechanism): its
hooks are attached first, so on a site both touch, the ablation's write wins.

This is the generation-time counterpart of :func:`alignscope.circuits.ablation.ablate`, which
measures a logit metric through the replay engine; the refusal-circuit study regenerates with it.

Example:
    >>> iv = ComponentAblation((("head", 3, 1), ("mlp_out", 5, None)), {("mlp_out", 5, None): mean5})  # doctest: +SKIP
    >>> generate(lm, prompts, intervention=iv)                                                         # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from alignscope.errors import InputError
from alignscope.hooks.backends import HookTarget
from alignscope.hooks.handle import HookHandle
from alignscope.hooks.writes import HookFn
from alignscope.models.loader import LoadedModel
from alignscope.sites import Site
from alignscope.steering.interventions import HookIntervention, StartHook

ABLATABLE = ("resid_pre", "attn_out", "mlp_out", "head")
Key = tuple[str, int, int | None]
"""``(component, layer, head)``; ``head`` is None except for ``head``."""


@dataclass(frozen=True, eq=False)
class ComponentAblation(HookIntervention[Any]):
    """Overwrite ``components`` with ``values`` (missing key: zeros), with ``over`` active underneath; a component with an
    entry in ``directions`` has only its projection on that unit direction overwritten."""

    kind: ClassVar[str] = "component_ablation"
    components: tuple[Key, ...]
    values: Mapping[Key, torch.Tensor] = field(default_factory=dict)
    over: HookIntervention[Any] | None = None
    directions: Mapping[Key, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for comp, _layer, head in self.components:
            if comp not in ABLATABLE:
                raise InputError(f"cannot ablate {comp!r}; choose one of {', '.join(ABLATABLE)}", field="component")
            if (head is None) != (comp != "head"):
                raise InputError(f"a head index goes with component head only (got {comp} with head {head})", field="component")
        stray = [k for k in self.directions if k not in self.components]
        if stray:
            raise InputError(f"a direction for {stray[0]}, which is not among the ablated components", field="directions")

    def validate(self, lm: LoadedModel) -> None:
        if self.over is not None:
            self.over.validate(lm)
        for comp, layer, head in self.components:
            Site(layer, comp, head).validate(lm)

    def new_handle(self) -> Any:
        return HookHandle() if self.over is None else self.over.new_handle()

    def start_hooks(self, target: HookTarget, handle: Any) -> list[StartHook]:
        return [] if self.over is None else self.over.start_hooks(target, handle)

    def hooks(self, lm: LoadedModel, handle: Any) -> list[tuple[Site, HookFn]]:
        """The underlying intervention's hooks, then one overwrite per ablated site."""
        base = [] if self.over is None else self.over.hooks(lm, handle)
        by_site: dict[tuple[str, int], list[Key]] = {}
        for key in self.components:
            by_site.setdefault((key[0], key[1]), []).append(key)
        own = [(Site(layer, comp), self._overwrite(keys, lm.n_heads)) for (comp, layer), keys in by_site.items()]
        return base + own

    def _overwrite(self, keys: list[Key], n_heads: int) -> HookFn:
        values = {k: self.values.get(k) for k in keys}
        directions = {k: self.directions.get(k) for k in keys}

        def hook(_m: torch.nn.Module, _i: Any, out: torch.Tensor) -> torch.Tensor:
            new = out.clone()
            view = new.reshape(*out.shape[:2], n_heads, -1) if keys[0][0] == "head" else new
            for key, value in values.items():
                head = key[2]
                part = view if head is None else view[:, :, head]
                fill = torch.zeros(part.shape[-1], device=out.device, dtype=out.dtype) if value is None else value.to(out.device, out.dtype)
                d = directions[key]
                if d is None:
                    part[...] = fill
                else:
                    d = d.to(out.device, out.dtype)
                    part -= ((part - fill) @ d).unsqueeze(-1) * d
            return view.reshape(out.shape)

        return hook

    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        tensors = {f"value.{c}.{layer}.{-1 if h is None else h}": v for (c, layer, h), v in self.values.items()}
        tensors |= {f"direction.{c}.{layer}.{-1 if h is None else h}": v for (c, layer, h), v in self.directions.items()}
        return tensors, {"components": json.dumps([list(k) for k in self.components])}
