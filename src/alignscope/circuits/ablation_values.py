"""The values an ablated component takes: zeros, its mean over reference prompts, or a resampled reference activation.

* ``zero``: no value (the write is zeros);
* ``mean``: the component's activation averaged over every token of every reference prompt;
* ``resample``: its activation at the last token of one reference prompt drawn (seeded) at random.

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
    kinds = sorted({c.component for c in components})
    one = [reference_ids[random.Random(seed).randrange(len(reference_ids))]]
    picked = one if method == "resample" else list(reference_ids)
    sums: dict[Key, torch.Tensor] = {}
    count = 0
    for ids in picked:
        rec = record_run(lm, ids, kinds)
        for c in components:
            act = rec.acts[(c.component, c.layer)].float()
            if c.head is not None:
                act = act[:, c.head]
            value = act[-1:] if method == "resample" else act
            key = (c.component, c.layer, c.head)
            sums[key] = sums.get(key, torch.zeros(act.shape[-1])) + value.sum(0).cpu()
        count += 1 if method == "resample" else len(ids)
    return {k: v / count for k, v in sums.items()}
