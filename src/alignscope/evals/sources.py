"""Prompt sources named by one string: a file, or ``builtin:NAME[:SPLIT]``.

Example:
    >>> ps = load_source("builtin:harmful:test")   # doctest: +SKIP
    >>> ps = load_sources(["builtin:harmful:test", "builtin:harmless:test"])   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

from alignscope.data.builtin_sets import load_builtin
from alignscope.data.prompts import PromptSet, load_prompts
from alignscope.errors import InputError

BUILTIN_PREFIX = "builtin:"


def load_source(spec: str) -> PromptSet:
    """Load ``builtin:NAME[:SPLIT]`` (a built-in set, optionally one split) or a prompt file.

    Raises:
        InputError: an unknown built-in name or split, or a bad file (file/line/field named).
    """
    if spec.startswith(BUILTIN_PREFIX):
        name, _, split = spec[len(BUILTIN_PREFIX):].partition(":")
        return load_builtin(name, split=split or None)
    return load_prompts(spec)


def load_sources(specs: Sequence[str]) -> PromptSet:
    """Concatenate several sources in order."""
    if not specs:
        raise InputError("no prompt source given; pass a file or builtin:NAME[:SPLIT]", field="prompts")
    sets = [load_source(s) for s in specs]
    out = sets[0]
    for more in sets[1:]:
        out = out + more
    return out
