"""The built-in training mixes, written by this project: ``refusals``, ``helpful`` and ``honest``.

* ``refusals``: the built-in harmful prompts (same fixed splits, so test prompts are never trained
  on), each paired with a short refusal written in-house in one of several styles
  (``builtin/refusal_styles.jsonl``); the style and template are chosen per prompt id by a seeded hash.
* ``helpful``: the built-in harmless and lookalike prompts with ``response=None`` (self-distillation).
* ``honest``: questions whose common answer is a misconception, each with a one-sentence true
  answer (``builtin/honest_qa.jsonl``); :func:`load_honest_mc` gives the same items as
  multiple-choice :class:`MCItem`.

Example:
    >>> ts = load_mixes(["refusals", "honest"], split="train")   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from alignscope.data.builtin_sets import builtin_splits, load_builtin
from alignscope.data.training.examples import SPLITS, Example, MCItem, TrainingSet, check_split
from alignscope.errors import InputError
from alignscope.tables import read_records

MIXES = ("refusals", "helpful", "honest")


def _builtin_file(name: str) -> Path:
    return Path(str(resources.files("alignscope.data").joinpath("builtin", name)))


def _text(record: Mapping[str, Any], key: str, path: Path, line: int) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"expected a non-empty string, got {value!r}", path=path, line=line, field=key)
    return value


def _texts(record: Mapping[str, Any], key: str, path: Path, line: int) -> tuple[str, ...]:
    value = record.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise InputError(f"expected a non-empty list of non-empty strings, got {value!r}", path=path, line=line, field=key)
    return tuple(value)


@cache
def refusal_styles(path: Path | None = None) -> dict[str, tuple[str, ...]]:
    """The refusal templates by style, in file order (default: the built-in ``refusal_styles.jsonl``).

    Raises:
        InputError: a record without a non-empty ``style`` or ``text`` (file, line and field named).
    """
    file = path or _builtin_file("refusal_styles.jsonl")
    styles: dict[str, list[str]] = {}
    for line, record in read_records(file, what="refusal style file", expected='an object {"style", "text"}'):
        styles.setdefault(_text(record, "style", file, line), []).append(_text(record, "text", file, line))
    return {style: tuple(texts) for style, texts in styles.items()}


def _pick(key: str, n: int) -> int:
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % n


def refusal_for(example_id: str, *, seed: int = 0) -> tuple[str, str]:
    """``(style, text)``: the refusal paired with ``example_id``, fixed for a given ``seed``.

    Example:
        >>> refusal_for("harmful-001") == refusal_for("harmful-001")
        True
    """
    styles = refusal_styles()
    names = sorted(styles)
    style = names[_pick(f"{seed}:style:{example_id}", len(names))]
    templates = styles[style]
    return style, templates[_pick(f"{seed}:text:{example_id}", len(templates))]


def _refusals(split: str | None, seed: int) -> list[Example]:
    out = []
    for p in load_builtin("harmful", split=split):
        pid = p.id or ""
        style, text = refusal_for(pid, seed=seed)
        out.append(Example(p.prompt, text, "refusals", p.category, style, pid, builtin_splits("harmful")[pid]))
    return out


def _helpful(split: str | None) -> list[Example]:
    out = []
    for name in ("harmless", "lookalike"):
        splits = builtin_splits(name)
        out += [Example(p.prompt, None, "helpful", p.category, None, p.id or "", splits[p.id or ""])
                for p in load_builtin(name, split=split)]
    return out


@dataclass(frozen=True)
class HonestItem:
    """One record of ``honest_qa.jsonl``: a question, its short true answer, more true answers and false ones."""

    id: str
    question: str
    answer: str
    true_answers: tuple[str, ...]
    false_answers: tuple[str, ...]
    category: str
    split: str


@cache
def honest_items(path: Path | None = None) -> tuple[HonestItem, ...]:
    """Every honest-QA record (default: the built-in ``honest_qa.jsonl``), validated.

    Raises:
        InputError: a missing or empty field, a bad split, or a duplicate id (file, line and field named).
    """
    file = path or _builtin_file("honest_qa.jsonl")
    items: list[HonestItem] = []
    seen: set[str] = set()
    for line, record in read_records(file, what="honest QA file", expected="an object"):
        item = HonestItem(_text(record, "id", file, line), _text(record, "question", file, line),
                          _text(record, "answer", file, line), _texts(record, "true_answers", file, line),
                          _texts(record, "false_answers", file, line), _text(record, "category", file, line),
                          _text(record, "split", file, line))
        if item.split not in SPLITS:
            raise InputError(f"expected one of {list(SPLITS)}, got {item.split!r}", path=file, line=line, field="split")
        if item.id in seen:
            raise InputError(f"duplicate id {item.id!r}", path=file, line=line, field="id")
        seen.add(item.id)
        items.append(item)
    return tuple(items)


def _honest(split: str | None) -> list[Example]:
    return [Example(i.question, i.answer, "honest", i.category, None, i.id, i.split)
            for i in honest_items() if split is None or i.split == split]


def load_honest_mc(split: str | None = None) -> list[MCItem]:
    """The honest-QA items as multiple choice, in lm-evaluation-harness's TruthfulQA layout.

    mc1 is the short true answer (index 0) followed by the false answers; mc2 is every true
    answer (the short one first) followed by every false answer, labelled 1/0.

    Raises:
        InputError: an unknown split.
    """
    check_split(split)
    out = []
    for i in honest_items():
        if split is not None and i.split != split:
            continue
        trues = (i.answer, *i.true_answers)
        out.append(MCItem(i.question, (i.answer, *i.false_answers), 0, trues + i.false_answers,
                          (1,) * len(trues) + (0,) * len(i.false_answers), i.id, i.category))
    return out


def load_mix(name: str, split: str | None = "train", *, seed: int = 0) -> TrainingSet:
    """One built-in mix (see the module docstring), optionally one split of it.

    Args:
        name: one of :data:`MIXES`.
        split: ``train`` (the default: what a trainer may fit on), ``val`` or ``test``; None gives
            every example, each still marked with its split.
        seed: chooses the refusal paired with each harmful prompt (``refusals`` only).

    Raises:
        InputError: an unknown mix or split (the message lists the valid ones).
    """
    if name not in MIXES:
        raise InputError(f"unknown training mix {name!r}; valid mixes: {', '.join(MIXES)}", field="mix")
    check_split(split)
    examples = _refusals(split, seed) if name == "refusals" else _helpful(split) if name == "helpful" else _honest(split)
    return TrainingSet(examples, f"builtin:{name}" + (f":{split}" if split else ""))


def load_mixes(names: Sequence[str], split: str | None = "train", *, seed: int = 0) -> TrainingSet:
    """Several built-in mixes concatenated in order (see :func:`load_mix`).

    Raises:
        InputError: no name given, or an unknown mix or split.
    """
    if not names:
        raise InputError(f"no training mix given; valid mixes: {', '.join(MIXES)}", field="mix")
    sets = [load_mix(name, split, seed=seed) for name in names]
    out = sets[0]
    for more in sets[1:]:
        out = out + more
    return out
