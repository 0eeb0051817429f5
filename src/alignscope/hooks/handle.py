"""The one handle type for attached hooks: ``remove()`` detaches every hook it holds.

Callers register hooks one by one into a handle and, on any failure while attaching, remove
what was already registered, so a half-attached intervention never stays behind. Used as a
context manager, the handle exists before the ``with`` body registers anything and removes
every hook when the body ends, also on error.

Torch modules are hooked only here: :meth:`HookHandle.on_output` and :meth:`HookHandle.on_input`
register a forward or forward-pre hook and track it (a test keeps ``register_forward_hook`` out
of every other module, the loader's permanent cache alias in ``models.hf_compat`` aside).

Example:
    >>> with HookHandle() as handle:                            # doctest: +SKIP
    ...     handle.on_output(module, fn)
    ...     model(ids)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle


def run_start_hooks(module: torch.nn.Module, **kwargs: Any) -> None:
    """Run ``module``'s keyword forward-pre hooks (the sequence-start hooks) as if it were called with ``kwargs``.

    For callers that run a model's blocks directly, without calling ``module`` itself (patching's
    replay): a stateful intervention's start hook then resets its per-sequence state as it would at
    the start of a forward pass. Plain pre-hooks (without keywords) are not start hooks and are not run.
    """
    for key, fn in list(module._forward_pre_hooks.items()):
        if key in module._forward_pre_hooks_with_kwargs:
            fn(module, (), dict(kwargs))


class HookHandle:
    """Removes a group of torch hook handles; ``remove()`` is idempotent."""

    def __init__(self, handles: Sequence[RemovableHandle] = ()) -> None:
        self._handles: list[RemovableHandle] = list(handles)

    def add(self, handle: RemovableHandle) -> None:
        """Track one more handle."""
        self._handles.append(handle)

    def on_output(self, module: torch.nn.Module, fn: Callable[..., Any]) -> None:
        """Register and track a forward hook ``fn(module, args, output)`` (a non-None return replaces the output)."""
        self.add(module.register_forward_hook(fn))

    def on_input(self, module: torch.nn.Module, fn: Callable[..., Any], *, with_kwargs: bool = False) -> None:
        """Register and track a forward-pre hook ``fn(module, args[, kwargs])``."""
        self.add(module.register_forward_pre_hook(fn, with_kwargs=with_kwargs))

    def remove(self) -> None:
        """Detach every hook, last attached first."""
        while self._handles:
            self._handles.pop().remove()

    @property
    def active(self) -> bool:
        """Whether any hook is still attached."""
        return bool(self._handles)

    def __enter__(self) -> HookHandle:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.remove()
