"""The one way to read activations: run a batch with read hooks at typed sites and keep what ``select`` returns.

:func:`read` registers a forward hook at each :class:`~alignscope.sites.Site` on the bridge's hook
points (in one :class:`~alignscope.hooks.handle.HookHandle`, removed when the run ends, also on
error), runs the batch, and returns ``{site: select(site, activation)}`` plus the final logits (or
None when the run stops early). Activations arrive in TransformerLens' layout for the site (the
hook point's own conversion is applied, as ``run_with_hooks`` does): ``(batch, seq, d_model)`` for
residual-width sites, ``(batch, seq, n_heads, d_head)`` for ``head``, ``(batch, n_heads, q, k)``
for ``pattern``.

``select`` reduces an activation as soon as it exists (pick positions, pool, move to CPU), so
only what a caller keeps stays in memory. :func:`reading` is the same read hooks around any
forward passes the caller runs itself: patching records (which also record each block's call)
and path gradients (which keep the autograd graph) use it. Capture, probe features, the logit
lens, DLA, patching, gradients and the dilemma patching all read through here.

Example:
    >>> got = read(lm, [Site(3, "resid_post")], ids, mask, select=lambda s, a: a[:, -1].cpu())   # doctest: +SKIP
    >>> got.acts[Site(3, "resid_post")].shape                                                    # doctest: +SKIP
    torch.Size([8, 576])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int

from alignscope.hooks.backends import BridgeTarget
from alignscope.hooks.handle import HookHandle
from alignscope.hooks.numerics import check_logits
from alignscope.hooks.points import HookTable, Point, hook_point, hook_table
from alignscope.models.loader import LoadedModel
from alignscope.sites import Site

Select = Callable[[Any, torch.Tensor], torch.Tensor]
"""``select(point, activation) -> kept``: what a read keeps of each activation."""


def detached(_point: Any, act: torch.Tensor) -> torch.Tensor:
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
        NumericalError: the logits hold inf/NaN at a real position (the message names the layer
            and site where they began).
    """
    ids = input_ids.to(lm.device)
    mask = None if attention_mask is None else attention_mask.to(lm.device)
    kwargs: dict[str, Any] = {} if mask is None else {"attention_mask": mask}
    if stop_at_layer is not None:
        kwargs["stop_at_layer"] = stop_at_layer
    with reading(lm, sites, select=select) as acts, torch.set_grad_enabled(grad):
        out = lm.bridge(ids, **kwargs)
    if stop_at_layer is None:
        check_logits(out.detach(), mask, BridgeTarget(lm), ids, n_layers=lm.n_layers, dtype=lm.dtype)
    return Reading(dict(acts), None if stop_at_layer is not None else out)


@contextmanager
def reading(
    lm: LoadedModel,
    points: Iterable[Point],
    *,
    select: Select = detached,
    convert: bool = True,
    isolate: bool = False,
    table: HookTable | None = None,
) -> Iterator[MutableMapping[Any, torch.Tensor]]:
    """Read ``points`` during whatever forward passes the ``with`` body runs; the hooks go when it ends.

    The yielded mapping fills as the body runs: ``point -> select(point, activation)`` (a later
    pass overwrites an earlier one). :func:`read` is this around one bridge forward; patching
    records and gradients use it around their own calls.

    Args:
        lm: the loaded model.
        points: typed sites, or names of bridge-internal hook points (duplicates are read once).
        select: reduces each activation before it is kept.
        convert: apply the hook point's own layout conversion (``head`` to ``(..., n_heads, d_head)``),
            as ``run_with_hooks`` does; ``False`` keeps the tensor the model itself computes with, which
            is the one that receives gradients.
        isolate: hand the model a copy of the activation, so that what ``select`` keeps has gradients
            only from this point's own consumer (not from other users of the same tensor, such as
            the residual connection). The value is unchanged.
        table: the bridge's hook table when the caller already holds it.

    Raises:
        SiteError: a point that does not exist on this model.
    """
    table = hook_table(lm) if table is None else table
    acts: dict[Any, torch.Tensor] = {}
    with HookHandle() as handle:
        for point in dict.fromkeys(points):
            module = hook_point(lm, table, point)
            handle.on_output(module, _reader(point, module, select, acts, convert, isolate))
        yield acts


def _reader(point: Point, module: torch.nn.Module, select: Select, acts: dict[Any, torch.Tensor],
            convert: bool, isolate: bool) -> Any:
    conversion = getattr(module, "hook_conversion", None) if convert else None

    def hook(_m: torch.nn.Module, _inputs: Any, out: torch.Tensor) -> torch.Tensor | None:
        if isolate:
            out = out.clone()
        acts[point] = select(point, out if conversion is None else conversion.convert(out))
        return out if isolate else None

    return hook
