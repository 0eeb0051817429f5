"""The forward-hook signature every write uses, and how a write at a site reaches the model.

A write hook is ``fn(module, input, activation) -> activation | None``: it returns the edited
activation (or None to leave it). Returning a new tensor replaces the module's output, which is
right wherever the site's hook point *is* the value the next computation reads.

``resid_mid`` is the exception. The TransformerBridge's ``blocks.{l}.hook_resid_mid`` is an
alias of the input of the norm before the MLP (``ln2.hook_in``). The decoder layer keeps its own
reference to the same tensor as the residual that the MLP output is added to, so a *returned*
tensor reaches only the MLP's input and the residual keeps its old value: patching
``resid_mid`` then equals patching ``mlp_out``. :func:`residual_write` makes such writes land in
place, so the norm and the residual add both see them. Parallel-attention models (falcon,
gpt_neox) have no ``resid_mid`` hook at all; :meth:`alignscope.sites.Site.validate` rejects it there.

Example:
    >>> hook = residual_write("resid_mid", lambda m, i, x: x + 1.0)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

HookFn = Callable[[torch.nn.Module, Any, torch.Tensor], torch.Tensor | None]

IN_PLACE_COMPONENTS: tuple[str, ...] = ("resid_mid",)


def residual_write(component: str, fn: HookFn) -> HookFn:
    """``fn`` as a hook whose result reaches the residual stream at ``component``.

    For components in :data:`IN_PLACE_COMPONENTS` the result is copied into the activation
    tensor itself (which the decoder layer also holds as its residual); elsewhere ``fn`` is
    returned unchanged.
    """
    if component not in IN_PLACE_COMPONENTS:
        return fn

    def hook(module: torch.nn.Module, inputs: Any, act: torch.Tensor) -> torch.Tensor | None:
        new = fn(module, inputs, act)
        if new is None or new is act:
            return None
        act.copy_(new)
        return act

    return hook
