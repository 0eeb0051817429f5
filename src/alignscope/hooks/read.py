"""The one way to read activations: run a batch with read hooks at typed sites and keep what ``select`` returns.

:func:`read` registers a forward hook at each :class:`~alignscope.sites.Site` on the bridge's hook
points (in one :class:`~alignscope.hooks.handle.HookHandle`, removed when the run ends, also on
error), runs the batch, and returns ``{site: select(site, activation)}`` plus the final logits (or
None when the run stops early). Activations arrive in TransformerLens' layout for the site (the
hook point's own conversion is applied, as ``run_with_hooks`` does): ``(batch, seq, d_model)`` for
residual-width sites, ``(batch, seq, n_heads, d_head)`` for ``head``, ``(batch, n_heads, q, k)``
for ``pattern``.

``select`` reduces an activation as soon as it exists (pick positions, pool, move to CPU), so
only what a caller keeps stays in memory. Capture, probe features, the logit lens, DLA and the
dilemma patching all read through here.

Example:
    >>> got = read(lm, [Site(3, "resid_post")], ids, mask, select=lambda s, a: a[:, -1].cpu())   # doctest: +SKIP
    >>> got.acts[Site(3, "resid_post")].shape                                                    # doctest: +SKIP
    torch.Size([8, 576])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int

from alignscope.hooks.handle import HookHandle
from alignscope.models.loader import LoadedModel
from alignscope.sites import Site

Select = Callable[[Site, torch.Tensor], torch.Tensor]


def detached(_site: Site, act: torch.Tensor) -> torch.Tensor:
    """The default ``select``: the activation itself, detached (no copy)."""
    return act.detach()


@dataclass(frozen=True)
class Reading:
    """What one :func:`read` returns.

    Attributes:
        acts: ``select(site, activation)`` for each site asked for.
        logits: ``(batch, seq, vocab)`` final logits, or None when the run stopped early.
    """

    acts: dict[Site, torch.Tensor]
    logits: Float[torch.Tensor, "batch seq vocab"] | None


def read(
    lm: LoadedModel,
    sites: Iterable[Site],
    input_ids: Int[torch.Tensor, "batch seq"],
    attention_mask: Int[torch.Tensor, "batch seq"] | None = None,
    *,
    select: Select = detached,
    stop_at_layer: int | None = None,
    grad: bool = False,
) -> Reading:
    """Run one (left-padded) batch through the bridge and read ``sites``.

    Args:
        lm: the loaded model.
        sites: where to read (duplicates are read once).
        input_ids: token ids; moved to ``lm.device``.
        attention_mask: 1 on real tokens (None: every token is real).
        select: reduces each activation before it is kept.
        stop_at_layer: stop before block ``stop_at_layer`` (then ``logits`` is None); None runs the
            whole model.
        grad: keep the autograd graph (default: no grad).

    Raises:
        SiteError: a site that does not exist on this model (the message lists the valid ones).
    """
    wanted = list(dict.fromkeys(sites))
    table = lm.bridge.hook_dict  # the bridge rebuilds this mapping on every access: take it once
    acts: dict[Site, torch.Tensor] = {}
    handle = HookHandle()
    try:
        for site in wanted:
            if site.hook_name not in table:
                site.validate(lm)  # raises the error that names the valid components and layers
            point = table[site.hook_name]
            handle.add(point.register_forward_hook(_reader(site, point, select, acts)))
        kwargs: dict[str, Any] = {} if attention_mask is None else {"attention_mask": attention_mask.to(lm.device)}
        if stop_at_layer is not None:
            kwargs["stop_at_layer"] = stop_at_layer
        with torch.set_grad_enabled(grad):
            out = lm.bridge(input_ids.to(lm.device), **kwargs)
    finally:
        handle.remove()
    return Reading(acts, None if stop_at_layer is not None else out)


def _reader(site: Site, point: torch.nn.Module, select: Select, acts: dict[Site, torch.Tensor]) -> Any:
    convert = getattr(point, "hook_conversion", None)

    def hook(_m: torch.nn.Module, _inputs: Any, out: torch.Tensor) -> None:
        acts[site] = select(site, out if convert is None else convert.convert(out))

    return hook
