"""Which token positions to read: ``last``, ``all``, ``post`` (post-instruction) or explicit indices.

Explicit indices count from the end of each prompt (``-1`` is the last token), so that they
mean the same thing in every left-padded row.

Example:
    >>> parse_positions("-1,-3").indices
    (-1, -3)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from alignscope.errors import InputError

PositionKind = Literal["last", "all", "post", "indices"]
_ALIASES = {"last": "last", "all": "all", "post": "post", "post-instruction": "post", "post_instruction": "post"}


@dataclass(frozen=True)
class PositionSpec:
    """A parsed position selection."""

    kind: PositionKind
    indices: tuple[int, ...] = ()

    def __str__(self) -> str:
        return ",".join(str(i) for i in self.indices) if self.kind == "indices" else self.kind

    @property
    def single(self) -> bool:
        """One position per prompt (stored without a position axis)."""
        return self.kind == "last" or (self.kind == "indices" and len(self.indices) == 1)

    def offsets_from_end(self, lengths: Sequence[int], n_post: Sequence[int]) -> list[int]:
        """Negative offsets read from every prompt (not defined for ``all``).

        Raises:
            InputError: an index reaches before the start of a prompt, or the prompts do not
                share one post-instruction length.
        """
        if self.kind == "all":
            raise ValueError("'all' has no fixed offsets")
        if self.kind == "last":
            return [-1]
        if self.kind == "post":
            counts = sorted(set(n_post))
            if len(counts) != 1:
                raise InputError(
                    f"prompts have different numbers of post-instruction tokens ({counts}); "
                    "use explicit positions such as -1,-2", field="positions")
            return list(range(-counts[0], 0))
        shortest = min(lengths)
        too_far = [i for i in self.indices if -i > shortest]
        if too_far:
            raise InputError(f"position {too_far[0]} reaches before the start of a {shortest}-token prompt", field="positions")
        return list(self.indices)


def parse_positions(text: str | PositionSpec) -> PositionSpec:
    """Parse ``last``, ``all``, ``post`` or a comma list of negative indices such as ``-1,-2``."""
    if isinstance(text, PositionSpec):
        return text
    key = text.strip().lower()
    if key in _ALIASES:
        return PositionSpec(_ALIASES[key])  # type: ignore[arg-type]
    try:
        indices = tuple(int(part) for part in key.split(",") if part.strip())
    except ValueError:
        indices = ()
    if not indices or any(i >= 0 for i in indices):
        raise InputError(
            f"cannot read positions {text!r}: expected last, all, post, or indices counted from the end "
            "such as -1 or -1,-2,-3", field="positions")
    return PositionSpec("indices", indices)


def gather_positions(acts: torch.Tensor, offsets: Sequence[int]) -> torch.Tensor:
    """Select positions counted from the end of a left-padded ``(batch, seq, ...)`` tensor.

    Returns:
        ``(batch, len(offsets), ...)``.
    """
    seq = acts.shape[1]
    index = torch.tensor([seq + o for o in offsets], device=acts.device)
    return acts.index_select(1, index)
