"""The one handle type for attached hooks: ``remove()`` detaches every hook it holds.

Callers register hooks one by one into a handle and, on any failure while attaching, remove
what was already registered, so a half-attached intervention never stays behind. Used as a
context manager, the handle exists before the ``with`` body registers anything and removes
every hook when the body ends, also on error.

Example:
    >>> with HookHandle() as handle:                            # doctest: +SKIP
    ...     handle.add(module.register_forward_hook(fn))
    ...     model(ids)
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from torch.utils.hooks import RemovableHandle


class HookHandle:
    """Removes a group of torch hook handles; ``remove()`` is idempotent."""

    def __init__(self, handles: Sequence[RemovableHandle] = ()) -> None:
        self._handles: list[RemovableHandle] = list(handles)

    def add(self, handle: RemovableHandle) -> None:
        """Track one more handle."""
        self._handles.append(handle)

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
