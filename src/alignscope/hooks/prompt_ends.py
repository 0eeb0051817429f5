"""Where each row's prompt ends, for interventions that act on the response only.

A forward pass over a prompt alone (the first call of ``generate``, a next-token read) ends with
the prompt, so an intervention can take the last real position of that call as the prompt's end.
A teacher-forced pass over prompt *and* response in one call (training, log-likelihood scoring)
cannot be read that way; the caller, which knows the boundary, says so for the duration of the
call with :func:`prompt_ends`, and the intervention reads it with :func:`current_prompt_ends`.

Example:
    >>> with prompt_ends(torch.tensor([5, 3])):          # doctest: +SKIP
    ...     logits = model(input_ids=ids, attention_mask=mask).logits
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

_ENDS: ContextVar[torch.Tensor | None] = ContextVar("alignscope_prompt_ends", default=None)


@contextmanager
def prompt_ends(ends: torch.Tensor) -> Iterator[None]:
    """Declare, for the calls inside the block, the column of each row's last prompt token.

    Args:
        ends: ``(batch,)`` integer column indices into the ``input_ids`` of the call.

    Raises:
        ValueError: ``ends`` is not a 1-d integer tensor of non-negative columns.
    """
    if ends.ndim != 1 or ends.dtype.is_floating_point or ends.dtype == torch.bool or bool((ends < 0).any()):
        raise ValueError(f"expected a 1-d tensor of non-negative integer columns, got {ends!r}")
    token = _ENDS.set(ends)
    try:
        yield
    finally:
        _ENDS.reset(token)


def current_prompt_ends() -> torch.Tensor | None:
    """The columns declared by the innermost :func:`prompt_ends` block, or None outside every block."""
    return _ENDS.get()


def last_real_columns(real: torch.Tensor) -> torch.Tensor:
    """``(batch,)`` the last ``True`` column of each row of a ``(batch, seq)`` bool mask (the last column for a row
    with none)."""
    cols = torch.arange(real.shape[1], device=real.device).expand_as(real)
    last = torch.where(real, cols, torch.full_like(cols, -1)).max(-1).values
    return torch.where(last < 0, torch.full_like(last, real.shape[1] - 1), last)
