"""The values an ablated component takes: zeros, its mean over reference prompts, or a resampled reference activation.

* ``zero``: no value (the write is zeros);
* ``mean``: the component's activation averaged over every token of every reference prompt;
* ``resample``: its activation at the last token of one reference prompt drawn (seeded) at random;
* ``direction`` (:func:`ablation_directions`): only the component's output along its own refusal
  direction changes. The direction is ``mean(harmful) - mean(harmless)`` of its output at the last
  prompt token of the ranking pairs, made unit; the projection on it is set to the harmless mean's.
  Everything else the component writes is kept, so a component that carries no refusal signal
  loses almost nothing (whole-component ablation of a random component of a small model is itself
  damaging, which swamps a random baseline).

Values are ``(d_model,)`` for a layer output and ``(d_head,)`` for a head, keyed
``(component, layer, head)`` as :class:`~alignscope.steering.component_ablation.ComponentAblation` takes them.
Any intervention attached to the model while this runs is part of the recorded runs.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from alignscope.circuits.ablation import METHODS, Component
from alignscope.circuits.replay import record_run
from alignscope.errors import InputError
from alignscope.models.loader import LoadedModel

Key = tuple[str, int, int | None]


def ablation_values(lm: LoadedModel, reference_ids: Sequence[Sequence[int]], components: Sequence[Component], method: str,
                    *, seed: int = 0) -> dict[Key, torch.Tensor]:
    """The value each component is set to under ``method`` (empty for ``zero``).

    Raises:
        InputError: an unknown method, or no reference prompts for ``mean``/``resample``.
    """
    if method not in METHODS:
        raise InputError(f"unknown ablation method {method!r}; choose one of {', '.join(METHODS)}", field="method")
    if method == "zero":
        return {}
    if not reference_ids:
        raise InputError("mean and resample ablation need reference prompts", field="method")
    one = [reference_ids[random.Random(seed).randrange(len(reference_ids))]]
    if method == "resample":
        return _summed(lm, one, components, last_only=True)
    sums = _summed(lm, reference_ids, components, last_only=False)
    n_tokens = sum(len(ids) for ids in reference_ids)
    return {k: v / n_tokens for k, v in sums.items()}


def _summed(lm: LoadedModel, prompts: Sequence[Sequence[int]], components: Sequence[Component], *,
            last_only: bool) -> dict[Key, torch.Tensor]:
    """Per component, its activation summed over every token (or only the last token) of every prompt, ``(width,)``."""
    kinds = sorted({c.component for c in components})
    sums: dict[Key, torch.Tensor] = {}
    for ids in prompts:
        rec = record_run(lm, ids, kinds)
        for c in components:
            act = rec.acts[(c.component, c.layer)].float()
            if c.head is not None:
                act = act[:, c.head]
            value = act[-1:] if last_only else act
            key = (c.component, c.layer, c.head)
            sums[key] = sums.get(key, torch.zeros(act.shape[-1])) + value.sum(0).cpu()
    return sums


def _last_token_means(lm: LoadedModel, prompts: Sequence[Sequence[int]], components: Sequence[Component]) -> dict[Key, torch.Tensor]:
    return {k: v / len(prompts) for k, v in _summed(lm, prompts, components, last_only=True).items()}


def ablation_directions(lm: LoadedModel, harmless_ids: Sequence[Sequence[int]], harmful_ids: Sequence[Sequence[int]],
                        components: Sequence[Component]) -> tuple[dict[Key, torch.Tensor], dict[Key, torch.Tensor]]:
    """``(values, directions)`` for ``direction`` ablation: per component the harmless mean at the last prompt token and the
    unit ``mean(harmful) - mean(harmless)`` there (zeros where the two means coincide: nothing to remove).

    Raises:
        InputError: no harmless or no harmful prompts.
    """
    if not harmless_ids or not harmful_ids:
        raise InputError("direction ablation needs harmful and harmless reference prompts", field="method")
    good, bad = _last_token_means(lm, harmless_ids, components), _last_token_means(lm, harmful_ids, components)
    directions = {}
    for key, mean in good.items():
        diff = bad[key] - mean
        norm = float(diff.norm())
        directions[key] = diff / norm if norm > 0 else torch.zeros_like(diff)
    return good, directions
