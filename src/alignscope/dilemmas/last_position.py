"""Exact ``resid_pre`` patching of the last position only, with the corrupt run's KV cache.

Patching the residual of the *last* token cannot change any earlier position (attention is
causal), so every patched variant only needs the last token recomputed on top of the corrupt
prefix's key/value cache: one batched single-token forward for all layers, instead of replaying
the whole prompt from each layer. The result equals the last column of
:func:`alignscope.circuits.patching.activation_patching` (checked in ``tests/dilemmas``).

Example:
    >>> effect, clean, corrupt = last_position_patching(lm, clean_ids, corrupt_ids, metric)  # doctest: +SKIP
    >>> effect.shape                                                                         # doctest: +SKIP
    torch.Size([30])
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from jaxtyping import Float

from alignscope.errors import InputError
from alignscope.hooks.backends import BridgeTarget
from alignscope.hooks.handle import HookHandle
from alignscope.hooks.read import read
from alignscope.hooks.writes import HookFn
from alignscope.metrics import Metric
from alignscope.models.hf_compat import CACHE_KWARG, output_cache
from alignscope.models.loader import LoadedModel
from alignscope.sites import Site


def _resid_pre_last(lm: LoadedModel, ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n_layers, d)`` resid_pre of the last token at every layer, and the last-position logits ``(1, 1, vocab)``."""
    sites = [Site(layer, "resid_pre") for layer in range(lm.n_layers)]
    got = read(lm, sites, torch.tensor([list(ids)]), select=lambda _s, act: act[0, -1].detach().clone())
    assert got.logits is not None
    return torch.stack([got.acts[site] for site in sites]), got.logits[:, -1:]


@contextmanager
def _overwrite_rows(lm: LoadedModel, values: torch.Tensor) -> Iterator[None]:
    """While active, row ``l`` of a batch gets ``values[l]`` as its resid_pre at layer ``l`` (last position)."""
    def make(layer: int) -> HookFn:
        def hook(_m: torch.nn.Module, _i: Any, out: torch.Tensor) -> torch.Tensor:
            out = out.clone()
            out[layer, -1] = values[layer].to(out.dtype)
            return out
        return hook

    target = BridgeTarget(lm)
    with HookHandle() as handle:
        for layer in range(lm.n_layers):
            handle.add(target.register(Site(layer, "resid_pre"), make(layer)))
        yield


def last_position_patching(
    lm: LoadedModel, clean_ids: Sequence[int], corrupt_ids: Sequence[int], metric: Metric,
) -> tuple[Float[torch.Tensor, " n_layers"], float, float]:
    """Denoising: clean ``resid_pre`` of the last token written into the corrupt run, one layer per row.

    Returns:
        ``(effect, clean_metric, corrupt_metric)`` with ``effect[l] = metric(patched at l) - metric(corrupt)``.

    Raises:
        InputError: the prompts differ in length or are shorter than two tokens.
    """
    if len(clean_ids) != len(corrupt_ids) or len(clean_ids) < 2:
        raise InputError(f"clean and corrupt prompts must have the same length >= 2 (got {len(clean_ids)} and "
                         f"{len(corrupt_ids)} tokens)", field="prompts")
    clean_resid, clean_logits = _resid_pre_last(lm, clean_ids)
    _, corrupt_logits = _resid_pre_last(lm, corrupt_ids)
    n = lm.n_layers
    prefix = torch.tensor([list(corrupt_ids[:-1])], device=lm.device)
    with torch.no_grad():
        cache = output_cache(lm.hf_model(prefix, use_cache=True))  # type: ignore[operator]
        cache.batch_repeat_interleave(n)
        last = torch.full((n, 1), int(corrupt_ids[-1]), device=lm.device)
        with _overwrite_rows(lm, clean_resid):
            logits = lm.hf_model(last, use_cache=True, **{CACHE_KWARG: cache}).logits  # type: ignore[operator]
    corrupt_m = float(metric(corrupt_logits)[0])
    effect = metric(logits[:, -1:].float()).float().cpu() - corrupt_m
    return effect, float(metric(clean_logits)[0]), corrupt_m
