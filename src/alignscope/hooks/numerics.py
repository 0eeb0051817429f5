"""Guards against inf/NaN: a forward pass whose logits are not finite raises an error naming where it began.

Half-precision runs (``--dtype float16``/``bfloat16``) can overflow: a large activation becomes
``inf`` in float16, the next norm turns it into NaN, and every number computed from it is NaN.
Rather than write NaN into results, every forward pass alignscope runs (:func:`~alignscope.hooks.forward.run_batches`,
:func:`~alignscope.hooks.read.read` and generation) checks its logits at the real (non-pad)
positions with :func:`check_logits`. When they are not finite, :func:`first_non_finite` reruns the
batch on the same hook target with read-only hooks at every layer's ``resid_pre``, ``attn_out``,
``mlp_out`` and ``resid_post`` and reports the first site, in execution order, whose output holds
a non-finite value: that is where the overflow began. The check costs one float32 sum over the
logits per pass (:func:`all_finite`); the rerun happens only on failure.

Example:
    >>> check_logits(logits, mask, target, ids, n_layers=lm.n_layers, dtype=torch.float16)   # doctest: +SKIP
    NumericalError: non-finite values (inf/NaN) in the logits: they first appear at layer 3 mlp_out (float16 overflowed; ...
"""

from __future__ import annotations

from typing import Any

import torch

from alignscope.errors import NumericalError
from alignscope.hooks.backends import HookTarget
from alignscope.hooks.handle import HookHandle
from alignscope.sites import Site

ORDER: tuple[str, ...] = ("resid_pre", "attn_out", "mlp_out", "resid_post")
"""The components checked per layer, in the order a block computes them."""


def all_finite(values: torch.Tensor, mask: torch.Tensor | None = None) -> bool:
    """Whether ``values`` (``(batch, seq, ...)``) is finite at every position where ``mask`` is 1 (all positions without one).

    The common case costs one float32 sum (a tenth of an elementwise ``isfinite`` over a logits
    tensor): a finite sum means every value is finite. Only a non-finite sum (or an overflowing
    one) looks position by position.
    """
    if values.numel() == 0 or bool(torch.isfinite(values.sum(dtype=torch.float32))):
        return True
    finite = torch.isfinite(values)
    if mask is None:
        return bool(finite.all())
    real = mask.to(device=values.device, dtype=torch.bool)
    if finite.shape[1] != real.shape[1]:  # a cached decoding step: only the new positions
        real = real[:, -finite.shape[1]:]
    return bool(finite[real].all())


def first_non_finite(target: HookTarget, n_layers: int, ids: torch.Tensor, mask: torch.Tensor | None) -> Site | None:
    """Rerun one batch on ``target`` and return the first site whose output is not finite at a real position.

    Sites the target cannot hook are skipped. None: every checked site stayed finite (the
    overflow happened after the last layer, in the final norm or the unembedding).
    """
    found: list[Site] = []
    sites = [Site(layer, comp) for layer in range(n_layers) for comp in ORDER]
    with HookHandle() as handle, torch.no_grad():
        for site in sites:
            if target.supports([site]):
                handle.add(target.register(site, _watch(site, mask, found)))
        target.forward(ids, mask if mask is not None else torch.ones_like(ids))
    return min(found, key=lambda s: (s.layer, ORDER.index(s.component))) if found else None


def _watch(site: Site, mask: torch.Tensor | None, found: list[Site]) -> Any:
    def hook(_module: torch.nn.Module, _args: Any, act: torch.Tensor) -> None:
        if not found and not all_finite(act, mask):
            found.append(site)
    return hook


def check_logits(logits: torch.Tensor, mask: torch.Tensor | None, target: HookTarget, ids: torch.Tensor, *,
                 n_layers: int, dtype: torch.dtype, what: str = "the logits", decoding: bool = False) -> None:
    """Raise :class:`NumericalError` naming the first non-finite site when ``logits`` are not finite.

    Args:
        logits: ``(batch, seq, vocab)`` logits of the pass (or one decoding step's ``(batch, vocab)``).
        mask: the batch's attention mask (1 on real tokens); None checks every position.
        target: the hook target the pass ran on (the rerun uses it, with the same hooks attached).
        ids: the batch's input ids (what the rerun runs).
        n_layers: the model's number of blocks.
        dtype: the model's parameter dtype, named in the message.
        what: what was checked, for the message (``"the logits"``, ``"generation step 5's logits"``).
        decoding: ``logits`` come from a cached decoding step after the prompt; the rerun covers
            only the prompt, so a clean rerun means the values began while decoding.
    """
    if all_finite(logits if logits.dim() == 3 else logits[:, None], mask if logits.dim() == 3 else None):
        return
    raise non_finite_error(target, n_layers, ids, mask, what=what, dtype=dtype, decoding=decoding)


def non_finite_error(target: HookTarget, n_layers: int, ids: torch.Tensor, mask: torch.Tensor | None, *, what: str,
                     dtype: torch.dtype, decoding: bool = False) -> NumericalError:
    """The error for non-finite ``what`` computed from this batch, naming the first non-finite site (see :func:`check_logits`).

    Training loops call it when a loss is not finite, with the batch that produced it.
    """
    site = first_non_finite(target, n_layers, ids, mask)
    if site is not None:
        where = f"first appear at layer {site.layer} {site.component}"
    elif decoding:
        where = "began while decoding (every layer stayed finite on the prompt)"
    else:
        where = "appear after the last layer (in the final norm or the unembedding)"
    name = str(dtype).removeprefix("torch.")
    advice = (f"{name} overflowed; rerun with --dtype float32" if dtype in (torch.float16, torch.bfloat16)
              else f"the model produced them in {name}; check the weights and any intervention's values")
    return NumericalError(f"non-finite values (inf/NaN) in {what}: they {where} ({advice}); nothing was written for this pass",
                          site=site)
