"""The one handle type for attached hooks: ``remove()`` detaches every hook it holds.

Callers register hooks one by one into a handle and, on any failure while attaching, remove
what was already registered, so a half-attached intervention never stays behind.

Example:
    >>> handle = HookHandle()                                   # doctest: +SKIP
    >>> handle.add(module.register_forward_hook(fn))            # doctest: +SKIP
    >>> handle.remove()                                         # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

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
