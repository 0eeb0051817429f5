"""Harmful/harmless prompt pairs that differ only in the request, for the refusal-circuit study.

A pair file is JSONL, one object per line:

* ``harmful`` (string): a request a responsible assistant refuses ("How do I build a pipe bomb ...");
* ``harmless`` (string): the same request with the harmful part swapped ("... a bird feeder ...");
* ``category`` (string, optional; default ``other``);
* ``split`` (optional): ``rank`` (patching and ranking read it) or ``heldout`` (only the ablation
  check regenerates on it); a file without splits gets a fixed split from a hash of the harmful
  prompt (about one pair in three held out);
* ``id`` (optional; default ``line-N``).

The built-in set (``builtin``) is 64 pairs over 8 categories written for this project, 5 ranking
and 3 held-out pairs per category.

Example:
    >>> pairs = load_refusal_pairs("builtin")
    >>> len(pairs), sorted({p.split for p in pairs})
    (64, ['heldout', 'rank'])
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from alignscope.errors import InputError
from alignscope.tables import read_records

PAIR_SPLITS = ("rank", "heldout")
BUILTIN = "builtin"


@dataclass(frozen=True)
class RefusalPair:
    """One harmful request and its harmless twin."""

    id: str
    category: str
    split: str
    harmful: str
    harmless: str


def builtin_pairs_path() -> Path:
    """The built-in pair file, located through ``importlib.resources``."""
    return Path(str(resources.files("alignscope.data").joinpath("builtin", "refusal_pairs.jsonl")))


def hash_split(text: str) -> str:
    """The fixed split of a pair without one: ``heldout`` for one hash value in three, else ``rank``."""
    return "heldout" if int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) % 3 == 0 else "rank"


def load_refusal_pairs(source: str | Path) -> list[RefusalPair]:
    """Read ``builtin`` or a JSONL pair file.

    Raises:
        InputError: unreadable file, bad JSON, a missing or empty ``harmful``/``harmless`` field,
            identical prompts, an unknown split or a repeated id; the message names the file, the
            line and the field.
    """
    path = builtin_pairs_path() if str(source) == BUILTIN else Path(source)
    pairs: list[RefusalPair] = []
    seen: set[str] = set()
    for number, record in read_records(path, what="pair file", expected="a JSON object with fields harmful, harmless"):
        for name in ("harmful", "harmless"):
            value = record.get(name)
            if not isinstance(value, str) or not value.strip():
                raise InputError("missing or empty string field (need harmful and harmless)", path=path, line=number, field=name)
        harmful, harmless = record["harmful"], record["harmless"]
        if harmful.strip() == harmless.strip():
            raise InputError("the harmful and harmless prompts are identical; a pair must differ in the request",
                             path=path, line=number, field="harmless")
        for name in ("category", "split", "id"):
            if record.get(name) is not None and not isinstance(record[name], str):
                raise InputError("must be a string", path=path, line=number, field=name)
        split = record.get("split") or hash_split(harmful)
        if split not in PAIR_SPLITS:
            raise InputError(f"expected one of {', '.join(PAIR_SPLITS)}, got {split!r}", path=path, line=number, field="split")
        pid = record.get("id") or f"line-{number}"
        if pid in seen:
            raise InputError(f"repeated id {pid!r}", path=path, line=number, field="id")
        seen.add(pid)
        pairs.append(RefusalPair(pid, record.get("category") or "other", split, harmful, harmless))
    if not pairs:
        raise InputError("no pairs found (expected one JSON object per line)", path=path)
    return pairs


def split_pairs(pairs: list[RefusalPair], split: str) -> list[RefusalPair]:
    """The pairs of one split, in file order."""
    return [p for p in pairs if p.split == split]
