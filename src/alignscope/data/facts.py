"""Subject-relation-object facts for the ``factual`` bench suite: the built-in set and ROME's ``known_1000.json``.

* ``builtin/facts.jsonl`` (written by this project): 70 facts (capitals, languages, element
  symbols, continents, landmarks, counts), one JSON object a line with ``id``, ``subject``,
  ``relation``, ``prompt`` (the text before the object) and ``target`` (the object, no leading space).
* :func:`read_known_facts` reads ROME's ``known_1000.json`` (Meng et al. 2022): a JSON list of
  records with ``prompt``, ``subject`` and ``attribute`` (``target_true`` is accepted in its place,
  as CounterFact-derived copies name it), plus ``relation_id`` and ``known_id`` when present.

Example:
    >>> facts = load_facts()
    >>> facts[0].prompt, facts[0].target
    ('The capital city of France is', 'Paris')
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from alignscope.errors import InputError
from alignscope.tables import read_json, read_records


@dataclass(frozen=True)
class Fact:
    """One fact: ``prompt`` is followed by ``" " + target`` in running text."""

    id: str
    subject: str
    relation: str
    prompt: str
    target: str


def builtin_facts_path() -> Path:
    """The built-in ``facts.jsonl``."""
    return Path(str(resources.files("alignscope.data").joinpath("builtin", "facts.jsonl")))


def _string(record: Any, key: str, path: Path, *, line: int | None = None, where: str = "") -> str:
    value = record.get(key) if isinstance(record, dict) else None
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"expected a non-empty string, got {value!r}", path=path, line=line, field=where + key)
    return value.strip()


def load_facts(path: str | Path | None = None) -> list[Fact]:
    """Facts from a JSONL file with ``subject``, ``relation``, ``prompt``, ``target`` (and optional ``id``); default: the built-in set.

    Raises:
        InputError: a missing or empty field (file, line and field named), or no facts.
    """
    file = Path(path) if path is not None else builtin_facts_path()
    facts = []
    for line, rec in read_records(file, what="facts file"):
        fid = rec.get("id") if isinstance(rec.get("id"), str) else f"fact-{line}"
        facts.append(Fact(str(fid), _string(rec, "subject", file, line=line), _string(rec, "relation", file, line=line),
                          _string(rec, "prompt", file, line=line), _string(rec, "target", file, line=line)))
    if not facts:
        raise InputError("no facts in the file", path=file)
    return facts


def read_known_facts(path: str | Path, *, limit: int | None = None) -> list[Fact]:
    """ROME's ``known_1000.json`` as facts (``attribute`` or ``target_true`` is the target).

    Raises:
        InputError: not a JSON list, or a record without ``prompt``/``subject``/target (the
            message names the file and the record's index, e.g. ``field '[3].attribute'``).
    """
    file = Path(path)
    data = read_json(file, what="known facts file")
    if not isinstance(data, list) or not data:
        raise InputError("expected a non-empty JSON list of records with prompt, subject and attribute", path=file)
    facts = []
    for i, rec in enumerate(data[:limit] if limit is not None else data):
        if not isinstance(rec, dict):
            raise InputError(f"expected a JSON object, got {type(rec).__name__}", path=file, field=f"[{i}]")
        target_key = "attribute" if "attribute" in rec else "target_true"
        target = rec.get(target_key)
        if isinstance(target, dict):  # CounterFact's {"str": ..., "id": ...}
            target = target.get("str")
        if not isinstance(target, str) or not target.strip():
            raise InputError(f"expected a non-empty string, got {target!r}", path=file, field=f"[{i}].{target_key}")
        fid = rec.get("known_id", rec.get("case_id", i))
        facts.append(Fact(f"known-{fid}", _string(rec, "subject", file, where=f"[{i}]."),
                          str(rec.get("relation_id", "")), _string(rec, "prompt", file, where=f"[{i}]."), target.strip()))
    return facts
