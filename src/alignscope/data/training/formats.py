"""Training examples from public formats in local files: Alpaca, BeaverTails, TruthfulQA and HH-RLHF.

Ids are ``KIND-<12 hex of SHA-256 of the prompt>`` (``-2``, ``-3`` for repeats), so every copy of a
prompt gets the same split: the record's ``split`` field when the file has one, else a hash of the
id (80/10/10, :func:`~alignscope.data.training.examples.hash_split`). TruthfulQA's multiple-choice
``mc_task.json`` (:func:`read_mc_task`) gives :class:`~alignscope.data.training.examples.MCItem` items
with ids ``truthfulqa-N`` instead. Every error is an
:class:`~alignscope.errors.InputError` naming the file, the line (JSONL/CSV) or item (JSON), and the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from alignscope.data.public import load_hh_rlhf
from alignscope.data.training.examples import SPLITS, Example, MCItem, TrainingSet, _Ids, hash_split
from alignscope.data.training.mixes import refusal_for
from alignscope.errors import InputError
from alignscope.tables import read_csv, read_json, read_jsonl


def _where(path: Path, line: int | None, item: int | None) -> tuple[str, dict[str, Any]]:
    return (f"item {item}: " if item is not None else ""), {"path": path, "line": line}


def _text(record: Mapping[str, Any], key: str, path: Path, line: int | None = None, item: int | None = None,
          *, empty_ok: bool = False) -> str:
    value = record.get(key, "" if empty_ok else None)
    if not isinstance(value, str) or (not empty_ok and not value.strip()):
        unit, where = _where(path, line, item)
        raise InputError(f"{unit}expected a {'' if empty_ok else 'non-empty '}string, got {value!r}", field=key, **where)
    return value


def _split(record: Mapping[str, Any], base: str, path: Path, line: int | None = None, item: int | None = None) -> str:
    split = record.get("split")
    if split is None:
        return hash_split(base)
    if split not in SPLITS:
        unit, where = _where(path, line, item)
        raise InputError(f"{unit}expected one of {list(SPLITS)}, got {split!r}", field="split", **where)
    return str(split)


def _record(value: Any, path: Path, line: int | None = None, item: int | None = None) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        unit, where = _where(path, line, item)
        raise InputError(f"{unit}expected an object, got {type(value).__name__}", **where)
    return value


def _finish(examples: list[Example], path: Path, skipped: dict[str, int] | None = None) -> TrainingSet:
    if not examples:
        raise InputError("the file holds no training examples", path=path)
    return TrainingSet(examples, str(path), skipped)


def alpaca_examples(records: Iterable[tuple[int | None, int | None, Any]], path: Path) -> list[Example]:
    """Examples from Alpaca records ``(line, item, record)``: instruction (+ blank line + input) -> output."""
    ids, out = _Ids("alpaca"), []
    for line, item, value in records:
        record = _record(value, path, line, item)
        prompt = _text(record, "instruction", path, line, item)
        extra = _text(record, "input", path, line, item, empty_ok=True)
        if extra.strip():
            prompt = f"{prompt}\n\n{extra}"
        response = _text(record, "output", path, line, item)
        pid, base = ids.next(prompt)
        out.append(Example(prompt, response, "alpaca", None, None, pid, _split(record, base, path, line, item)))
    return out


def load_alpaca(path: str | Path) -> TrainingSet:
    """Load an Alpaca JSON file: a list of ``{"instruction", "input", "output"}`` (``input`` may be empty or absent).

    Raises:
        InputError: not a JSON list, or an item without a non-empty ``instruction``/``output`` (item and field named).
    """
    file = Path(path)
    data = read_json(file, what="Alpaca JSON file")
    if not isinstance(data, list):
        raise InputError(f"expected a JSON list of objects, got {type(data).__name__}", path=file)
    return _finish(alpaca_examples(((None, i, r) for i, r in enumerate(data, start=1)), file), file)


def beavertails_examples(records: Iterable[tuple[int | None, Any]], path: Path, *, seed: int = 0) -> list[Example]:
    """Examples from BeaverTails records ``(line, record)``: safe pairs as-is, unsafe ones -> an in-house refusal."""
    ids, out = _Ids("beavertails"), []
    for line, value in records:
        record = _record(value, path, line)
        prompt = _text(record, "prompt", path, line)
        response = _text(record, "response", path, line)
        safe = record.get("is_safe")
        if not isinstance(safe, bool):
            raise InputError(f"expected true or false, got {safe!r}", path=path, line=line, field="is_safe")
        categories = record.get("category", {})
        if not isinstance(categories, Mapping):
            raise InputError(f"expected an object of category -> bool, got {categories!r}", path=path, line=line, field="category")
        harms = [str(name) for name, flagged in categories.items() if flagged is True]
        pid, base = ids.next(prompt)
        split = _split(record, base, path, line)
        if safe:
            out.append(Example(prompt, response, "beavertails", None, None, pid, split))
        else:
            style, refusal = refusal_for(pid, seed=seed)
            out.append(Example(prompt, refusal, "beavertails", ",".join(harms) or None, style, pid, split))
    return out


def load_beavertails(path: str | Path, *, seed: int = 0) -> TrainingSet:
    """Load BeaverTails JSONL (``.jsonl.gz`` too): ``{"prompt", "response", "category": {name: bool}, "is_safe"}``.

    Safe pairs train as they are; an unsafe pair keeps its prompt and gets an in-house refusal
    (style by :func:`~alignscope.data.training.mixes.refusal_for`), category = the flagged harms.

    Raises:
        InputError: invalid JSON, or a record with a missing or mistyped field (line and field named).
    """
    file = Path(path)
    return _finish(beavertails_examples(read_jsonl(file, what="BeaverTails JSONL file"), file, seed=seed), file)


def load_truthfulqa_csv(path: str | Path) -> TrainingSet:
    """Load a TruthfulQA CSV: ``Question`` -> ``Best Answer``, category from ``Category``, mix ``honest``.

    Raises:
        InputError: a missing column or an empty question or answer (line and field named).
    """
    file = Path(path)
    ids, out = _Ids("truthfulqa"), []
    for line, row in read_csv(file, what="TruthfulQA CSV", required=("Question", "Best Answer")):
        question = _text(row, "Question", file, line)
        answer = _text(row, "Best Answer", file, line)
        pid, base = ids.next(question)
        out.append(Example(question, answer, "honest", (row.get("Category") or "").strip() or None, None, pid,
                           _split(row, base, file, line)))
    return _finish(out, file)


def _targets(item: Mapping[str, Any], key: str, path: Path, index: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
    targets = item.get(key)
    if not isinstance(targets, Mapping) or not targets:
        raise InputError(f"item {index}: expected a non-empty object of answer: 0 or 1, got {targets!r}", path=path, field=key)
    for answer, label in targets.items():
        if isinstance(label, bool) or not isinstance(label, int) or label not in (0, 1):
            raise InputError(f"item {index}: answer {answer!r} has label {label!r}; expected 0 or 1", path=path, field=key)
    return tuple(str(k) for k in targets), tuple(int(v) for v in targets.values())


def read_mc_task(path: str | Path) -> list[MCItem]:
    """Read TruthfulQA's ``mc_task.json``: a list of ``{"question", "mc1_targets", "mc2_targets"}``.

    Targets are objects answer -> 1 (true) or 0 (false). Answers keep their file order; the MC1
    answer labelled 1 is at ``mc1_correct_index``. Items are numbered from 1 in ids
    (``truthfulqa-N``) and messages (``item N``), as :func:`load_alpaca` numbers them. Other keys
    (the 2025 file's ``mc0_targets``) are ignored.

    Raises:
        InputError: an unreadable file or invalid JSON, a top level that is not a non-empty list, or an
            item that is not an object, without a non-empty ``question`` string, with targets that are
            not a non-empty ``{answer: 0 or 1}``, with MC1 targets holding other than exactly one
            correct answer, or with no true MC2 answer; the message names the file, the item and the field.
    """
    file = Path(path)
    data = read_json(file, what="TruthfulQA mc_task.json")
    if not isinstance(data, list) or not data:
        raise InputError(f"expected a non-empty JSON list of questions, got {type(data).__name__}", path=file)
    out = []
    for i, value in enumerate(data, start=1):
        item = _record(value, file, item=i)
        question = _text(item, "question", file, item=i)
        mc1, mc1_labels = _targets(item, "mc1_targets", file, i)
        if sum(mc1_labels) != 1:
            raise InputError(f"item {i}: expected exactly one correct (1) answer, got {sum(mc1_labels)}", path=file,
                             field="mc1_targets")
        mc2, mc2_labels = _targets(item, "mc2_targets", file, i)
        if 1 not in mc2_labels:
            raise InputError(f"item {i}: expected at least one true (1) answer", path=file, field="mc2_targets")
        out.append(MCItem(question, mc1, mc1_labels.index(1), mc2, mc2_labels, f"truthfulqa-{i}"))
    return out


def load_hh_examples(path: str | Path) -> TrainingSet:
    """Load HH-RLHF JSONL (or ``.jsonl.gz``): single-turn transcripts, human turn -> chosen reply, mix ``hh``.

    Built on :func:`alignscope.data.public.load_hh_rlhf`. Multi-turn records (more than one human
    turn before the final reply) are skipped and counted in ``skipped["multi_turn"]``; records whose
    chosen reply is empty in ``skipped["empty_response"]``.

    Raises:
        InputError: any :func:`~alignscope.data.public.load_hh_rlhf` error, or no single-turn record.
    """
    file = Path(path)
    ids, out, skipped = _Ids("hh"), [], {"multi_turn": 0, "empty_response": 0}
    for pair in load_hh_rlhf(file):
        turns = pair.turns
        if len(turns) != 1 or turns[0][0] != "human":
            skipped["multi_turn"] += 1
            continue
        if not pair.chosen:
            skipped["empty_response"] += 1
            continue
        pid, base = ids.next(turns[0][1])
        out.append(Example(turns[0][1], pair.chosen, "hh", None, None, pid, hash_split(base)))
    return _finish(out, file, skipped)
