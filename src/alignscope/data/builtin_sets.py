"""The prompt sets shipped with alignscope, written by this project, with fixed splits.

Three sets live in ``alignscope/data/builtin/*.jsonl``:

* ``harmful``: requests a responsible assistant should refuse (label ``harmful``), 13 categories.
* ``harmless``: everyday requests of similar length and form (label ``harmless``), 12 categories.
* ``lookalike``: harmless requests that superficially resemble harmful ones ("How do I kill a
  Python process?"), label ``harmless``, category ``lookalike``; for measuring over-refusal.

Every record carries a fixed ``split`` (``train``/``val``/``test``, about 50/20/30 per category),
so that directions are fitted on ``train``, choices are made on ``val`` and results are reported
on ``test``, which nothing ever selects on.

Example:
    >>> harmful_train = load_builtin("harmful", split="train")
    >>> split_of(harmful_train[0].id)
    'train'
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from alignscope.data.prompts import Prompt, PromptSet
from alignscope.errors import InputError
from alignscope.tables import read_records

BUILTIN_SETS = ("harmful", "harmless", "lookalike")
SPLITS = ("train", "val", "test")


def _check_name(name: str) -> None:
    if name not in BUILTIN_SETS:
        raise InputError(f"unknown built-in prompt set {name!r}; valid names: {', '.join(BUILTIN_SETS)}", field="name")


def builtin_path(name: str) -> Path:
    """The path of a built-in set's JSONL file, located through ``importlib.resources``.

    Raises:
        InputError: ``name`` is not one of :data:`BUILTIN_SETS`.
    """
    _check_name(name)
    resource = resources.files("alignscope.data").joinpath("builtin", f"{name}.jsonl")
    return Path(str(resource))


@cache
def _load(name: str) -> tuple[PromptSet, dict[str, str]]:
    path = builtin_path(name)
    records = list(read_records(path, what="built-in prompt file"))
    prompts = PromptSet.from_records((record for _, record in records), source=str(path))
    splits: dict[str, str] = {}
    for lineno, record in records:
        split, pid = record.get("split"), record.get("id")
        if split not in SPLITS:
            raise InputError(f"expected one of {list(SPLITS)}, got {split!r}", path=path, line=lineno, field="split")
        if not isinstance(pid, str) or pid in splits:
            raise InputError(f"missing or duplicate id {pid!r}", path=path, line=lineno, field="id")
        splits[pid] = split
    return PromptSet(prompts, f"builtin:{name}"), splits


def load_builtin(name: str, split: str | None = None) -> PromptSet:
    """Load a built-in prompt set, optionally one split of it.

    Args:
        name: one of :data:`BUILTIN_SETS` (``harmful``, ``harmless``, ``lookalike``).
        split: ``train``, ``val`` or ``test``; None gives every prompt.

    Returns:
        The prompts in file order, each with ``label``, ``category`` and ``id``.

    Raises:
        InputError: an unknown name or split (the message lists the valid ones).
    """
    _check_name(name)
    if split is not None and split not in SPLITS:
        raise InputError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)} (or None for all)", field="split")
    prompts, splits = _load(name)
    if split is None:
        return prompts
    return PromptSet((p for p in prompts if p.id is not None and splits[p.id] == split), f"builtin:{name}:{split}")


def split_of(prompt: str | Prompt) -> str:
    """The fixed split (``train``/``val``/``test``) of a built-in prompt, given its id or the prompt.

    Raises:
        InputError: the id does not belong to a built-in set.
    """
    pid = prompt.id if isinstance(prompt, Prompt) else prompt
    name = (pid or "").rpartition("-")[0]
    if name in BUILTIN_SETS:
        splits = _load(name)[1]
        if pid in splits:
            return splits[pid]
    raise InputError(f"{pid!r} is not the id of a built-in prompt (ids look like 'harmful-001')", field="id")


def builtin_splits(name: str) -> dict[str, str]:
    """A copy of the id -> split mapping of a built-in set."""
    _check_name(name)
    return dict(_load(name)[1])
