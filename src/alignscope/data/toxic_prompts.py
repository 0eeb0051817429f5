"""Prompts that invite toxic text, for the ``toxicity`` bench suite.

``builtin/toxicity_prompts.jsonl`` (written by this project): 20 requests for insults, rants and
put-downs aimed at everyday annoyances (no protected groups), label ``invites_toxic``.

Example:
    >>> len(load_toxic_prompts())
    20
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from alignscope.data.prompts import PromptSet, load_prompts


def builtin_toxic_path() -> Path:
    """The built-in ``toxicity_prompts.jsonl``."""
    return Path(str(resources.files("alignscope.data").joinpath("builtin", "toxicity_prompts.jsonl")))


def load_toxic_prompts(path: str | Path | None = None) -> PromptSet:
    """The prompts of ``path`` (any prompt file :func:`~alignscope.data.prompts.load_prompts` reads), default the built-in set."""
    return load_prompts(path if path is not None else builtin_toxic_path())
