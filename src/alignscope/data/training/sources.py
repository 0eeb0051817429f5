"""Training sources: ``builtin:MIX[:SPLIT]``, ``alpaca:PATH``, ``beavertails:PATH``, ``truthfulqa:PATH``, ``hh:PATH`` or ``hf:NAME[:SPLIT]``.

The same shape as the prompt-source grammar (:mod:`alignscope.data.sources`: ``builtin:`` and
``hf:`` with an optional split) with a format name in front of a local file, because a training
source yields :class:`Example` (prompt and response), not prompts.

Example:
    >>> parse_training_source("builtin:refusals:val")
    TrainingSource(kind='builtin', name='refusals', split='val')
    >>> str(parse_training_source("alpaca:data/alpaca.json"))
    'alpaca:data/alpaca.json'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from alignscope.data.sources import split_spec
from alignscope.data.training.examples import SPLITS, TrainingSet
from alignscope.data.training.formats import (
    alpaca_examples,
    beavertails_examples,
    load_alpaca,
    load_beavertails,
    load_hh_examples,
    load_truthfulqa_csv,
)
from alignscope.data.training.mixes import MIXES, load_mix
from alignscope.errors import InputError

TrainingKind = Literal["builtin", "hf", "alpaca", "beavertails", "truthfulqa", "hh"]
FILE_KINDS = ("alpaca", "beavertails", "truthfulqa", "hh")
TRAINING_GRAMMAR = "builtin:MIX[:SPLIT], hf:NAME[:SPLIT], or alpaca:PATH, beavertails:PATH, truthfulqa:PATH, hh:PATH"


@dataclass(frozen=True)
class TrainingSource:
    """A parsed training source: its kind, the mix, dataset name or file path, and an optional split."""

    kind: TrainingKind
    name: str
    split: str | None = None

    def __str__(self) -> str:
        """The spec string that parses back to this source."""
        return f"{self.kind}:{self.name}" + (f":{self.split}" if self.split else "")


def parse_training_source(spec: str | TrainingSource) -> TrainingSource:
    """Parse a training source spec (see the module docstring).

    Raises:
        InputError: an unknown kind, an empty name or path, an unknown mix or split (valid ones listed).
    """
    if isinstance(spec, TrainingSource):
        return spec
    parts = split_spec(spec, what="training source", grammar=TRAINING_GRAMMAR, field="source", file_kinds=FILE_KINDS)
    if parts is None:
        raise InputError(f"training source {spec!r}: expected {TRAINING_GRAMMAR}", field="source")
    kind, name, split = parts
    if kind == "builtin" and name not in MIXES:
        raise InputError(f"training source {spec!r}: unknown mix {name!r}; valid mixes: {', '.join(MIXES)}", field="source")
    if kind == "builtin" and split and split not in SPLITS:
        raise InputError(f"training source {spec!r}: unknown split {split!r}; valid splits: {', '.join(SPLITS)}",
                         field="source")
    return TrainingSource(kind, name, split)  # type: ignore[arg-type]


def load_training_source(spec: str | TrainingSource, *, seed: int = 0) -> TrainingSet:
    """Load one training source; ``builtin:MIX`` without a split gives every split (each example marked).

    Raises:
        InputError: a bad spec, a bad file (file, line and field named), or ``hf:`` without ``datasets``.
    """
    source = parse_training_source(spec)
    if source.kind == "builtin":
        return load_mix(source.name, source.split, seed=seed)
    if source.kind == "hf":
        return _load_hf(source, seed)
    path = Path(source.name)
    if source.kind == "alpaca":
        return load_alpaca(path)
    if source.kind == "beavertails":
        return load_beavertails(path, seed=seed)
    if source.kind == "truthfulqa":
        return load_truthfulqa_csv(path)
    return load_hh_examples(path)


def _load_hf(source: TrainingSource, seed: int) -> TrainingSet:
    try:
        import datasets  # optional dependency, not installed by alignscope
    except ImportError:
        raise InputError(f"hf:{source.name} needs the optional 'datasets' package and a reachable hub",
                         path=str(source)) from None
    try:
        rows: Any = datasets.load_dataset(source.name, split=source.split or "train")
    except Exception as exc:  # datasets raises many types; surface its message plainly
        raise InputError(f"could not load the dataset: {exc}", path=str(source)) from None
    columns = set(getattr(rows, "column_names", None) or [])
    where = Path(str(source))
    if {"instruction", "output"} <= columns:
        examples = alpaca_examples(((None, i, r) for i, r in enumerate(rows, start=1)), where)
    elif {"prompt", "response", "is_safe"} <= columns:
        examples = beavertails_examples(((i, r) for i, r in enumerate(rows, start=1)), where, seed=seed)
    else:
        raise InputError(f"expected alpaca columns (instruction, input, output) or BeaverTails columns "
                         f"(prompt, response, is_safe, category); the dataset has {sorted(columns)}", path=str(source))
    if not examples:
        raise InputError("the dataset holds no training examples", path=str(source))
    return TrainingSet(examples, str(source))


__all__ = ["FILE_KINDS", "TRAINING_GRAMMAR", "TrainingSource", "load_training_source", "parse_training_source"]
