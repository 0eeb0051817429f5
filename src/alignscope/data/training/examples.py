"""Training examples: a prompt, the response to train on (or None for self-distillation), and where it came from.

Example:
    >>> ts = TrainingSet([Example("hi", None, "helpful", None, None, "x-1", "train")])
    >>> len(ts.filter(split="test"))
    0
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from alignscope.errors import InputError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Example:
    """One training example.

    Attributes:
        prompt: the user turn.
        response: the assistant turn to train on; None means "fill by self-distillation" (the
            trainer generates the unsteered model's own greedy answer).
        mix: the mix or format it came from (``refusals``, ``helpful``, ``honest``, ``alpaca``, ...).
        category: the prompt's category, when known.
        style: the refusal style of a written refusal, else None.
        id: a stable id, unique within its set.
        split: ``train``, ``val`` or ``test``.
    """

    prompt: str
    response: str | None
    mix: str
    category: str | None
    style: str | None
    id: str
    split: str


@dataclass(frozen=True)
class MCItem:
    """A multiple-choice item in lm-evaluation-harness's TruthfulQA layout; the one such type.

    Lists given for the tuple fields are stored as tuples.

    Attributes:
        question: the question.
        mc1_choices: the MC1 answers, in file order; exactly one is correct.
        mc1_correct_index: the index of the correct answer in ``mc1_choices`` (0 in TruthfulQA's
            files and the built-in honest set, but any position is allowed).
        mc2_choices: the MC2 answers, in file order (true and false ones).
        mc2_labels: 1 for a true choice, 0 for a false one, aligned with ``mc2_choices``.
        id: the item's id, when known.
        category: the item's category, when known.

    Raises:
        InputError: no MC1 or MC2 choices, an ``mc1_correct_index`` that is not an int in
            ``[0, len(mc1_choices))``, labels that are not 0/1 (``True``/``False`` included) or do not
            match the choices in number, or no true MC2 answer; the field named.
    """

    question: str
    mc1_choices: tuple[str, ...]
    mc1_correct_index: int
    mc2_choices: tuple[str, ...]
    mc2_labels: tuple[int, ...]
    id: str | None = None
    category: str | None = None

    def __post_init__(self) -> None:
        for name in ("mc1_choices", "mc2_choices", "mc2_labels"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.mc1_choices:
            raise InputError("expected at least one MC1 choice", field="mc1_choices")
        index = self.mc1_correct_index
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self.mc1_choices):
            raise InputError(f"expected an int from 0 to {len(self.mc1_choices) - 1}, got {index!r}", field="mc1_correct_index")
        if not self.mc2_choices:
            raise InputError("expected at least one MC2 choice", field="mc2_choices")
        if len(self.mc2_labels) != len(self.mc2_choices):
            raise InputError(f"{len(self.mc2_labels)} labels for {len(self.mc2_choices)} choices", field="mc2_labels")
        if any(isinstance(label, bool) or not isinstance(label, int) or label not in (0, 1) for label in self.mc2_labels):
            raise InputError(f"expected labels 0 or 1, got {list(self.mc2_labels)}", field="mc2_labels")
        if 1 not in self.mc2_labels:
            raise InputError("expected at least one true (1) MC2 answer", field="mc2_labels")


def hash_split(key: str) -> str:
    """A fixed split for ``key``: ``train``/``val``/``test`` for 80/10/10 percent of SHA-256 buckets.

    Example:
        >>> hash_split("alpaca-0") in SPLITS
        True
    """
    bucket = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % 100
    return "train" if bucket < 80 else "val" if bucket < 90 else "test"


def check_split(split: str | None) -> None:
    """Raise InputError unless ``split`` is None or one of :data:`SPLITS`."""
    if split is not None and split not in SPLITS:
        raise InputError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)} (or None for all)", field="split")


class TrainingSet(Sequence[Example]):
    """An ordered, immutable collection of :class:`Example`.

    Attributes:
        source: where the examples came from (a spec or a path).
        skipped: records a loader left out, by reason (``{"multi_turn": 12}``).
    """

    def __init__(self, examples: Iterable[Example], source: str = "<memory>", skipped: dict[str, int] | None = None) -> None:
        self._examples = tuple(examples)
        self.source = source
        self.skipped: dict[str, int] = dict(skipped or {})

    def __len__(self) -> int:
        return len(self._examples)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return TrainingSet(self._examples[index], self.source, self.skipped)
        return self._examples[index]

    def __iter__(self) -> Iterator[Example]:
        return iter(self._examples)

    def __add__(self, other: TrainingSet) -> TrainingSet:
        skipped = dict(self.skipped)
        for reason, n in other.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + n
        return TrainingSet(self._examples + other._examples, f"{self.source}+{other.source}", skipped)

    def __repr__(self) -> str:
        return f"TrainingSet({len(self)} examples from {self.source!r})"

    def filter(self, *, mix: str | Sequence[str] | None = None, split: str | None = None) -> TrainingSet:
        """The examples of the given mix (or mixes) and split; None keeps all."""
        check_split(split)
        mixes = None if mix is None else {mix} if isinstance(mix, str) else set(mix)
        kept = (e for e in self._examples if (mixes is None or e.mix in mixes) and (split is None or e.split == split))
        return TrainingSet(kept, self.source, self.skipped)

    @property
    def prompts(self) -> list[str]:
        """The prompts, in order."""
        return [e.prompt for e in self._examples]


@dataclass
class _Ids:
    """Stable ids from content: ``PREFIX-<12 hex of SHA-256>``, with ``-2``, ``-3`` for repeats."""

    prefix: str
    seen: dict[str, int] = field(default_factory=dict)

    def next(self, key: str) -> tuple[str, str]:
        """``(id, base id)``; the base id is shared by repeats of ``key`` and decides the split."""
        base = f"{self.prefix}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:12]}"
        n = self.seen.get(base, 0) + 1
        self.seen[base] = n
        return (base if n == 1 else f"{base}-{n}"), base
