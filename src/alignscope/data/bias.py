"""Bias benchmark items: BBQ multiple-choice questions and CrowS-Pairs sentence pairs, with built-in in-house sets.

* BBQ (Parrish et al. 2022) JSONL, one question a line: ``context``, ``question``, ``ans0``..``ans2``,
  ``label`` (the correct index), ``context_condition`` (``ambig``/``disambig``), ``question_polarity``
  (``neg``/``nonneg``), ``answer_info`` (per answer ``[name, group]``, group ``unknown`` for the
  "cannot be determined" answer) and ``additional_metadata.stereotyped_groups``. The *target* answer is
  the one whose group (a ``M-``/``F-`` prefix dropped) or name is a stereotyped group, compared without
  case; an item with no single such answer has no target and counts for accuracy only.
  ``builtin/bbq_mini.jsonl`` is a 24-item set in this format written by this project (six scenarios, each
  ambiguous and disambiguated, negative and non-negative question).
* CrowS-Pairs (Nangia et al. 2020) CSV: ``sent_more`` (the more stereotyping sentence), ``sent_less``,
  ``stereo_antistereo`` and ``bias_type``. ``builtin/crows_mini.csv`` holds 16 in-house pairs.

Missing columns or fields raise :class:`~alignscope.errors.InputError` naming the file and line.

Example:
    >>> items = load_bbq()
    >>> len(items), items[0].condition
    (24, 'ambig')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from alignscope.errors import InputError
from alignscope.tables import read_csv, read_records

BBQ_FIELDS = ("context", "question", "ans0", "ans1", "ans2", "label", "context_condition", "question_polarity", "answer_info")
CROWS_COLUMNS = ("sent_more", "sent_less", "stereo_antistereo", "bias_type")


@dataclass(frozen=True)
class BBQItem:
    """One BBQ question: three answers, the correct one, the unknown one and the stereotyped target (None when not identified)."""

    id: str
    category: str
    condition: str
    polarity: str
    context: str
    question: str
    answers: tuple[str, str, str]
    label: int
    unknown_index: int
    target_index: int | None


@dataclass(frozen=True)
class CrowsPair:
    """One CrowS-Pairs pair: ``more`` is the more stereotyping sentence."""

    id: str
    more: str
    less: str
    direction: str
    bias_type: str


def builtin_bias_path(name: str) -> Path:
    """A built-in bias file: ``bbq_mini.jsonl`` or ``crows_mini.csv``."""
    return Path(str(resources.files("alignscope.data").joinpath("builtin", name)))


def _norm(group: str) -> str:
    g = group.strip().lower()
    return g[2:] if g[:2] in ("m-", "f-") else g


def _bbq_item(rec: dict[str, Any], file: Path, line: int) -> BBQItem:
    for name in BBQ_FIELDS:
        if name not in rec:
            raise InputError(f"missing field; BBQ records need {', '.join(BBQ_FIELDS)}", path=file, line=line, field=name)
    answers = tuple(str(rec[f"ans{i}"]) for i in range(3))
    label = rec["label"]
    if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label <= 2:
        raise InputError(f"expected 0, 1 or 2, got {label!r}", path=file, line=line, field="label")
    condition, polarity = rec["context_condition"], rec["question_polarity"]
    if condition not in ("ambig", "disambig"):
        raise InputError(f"expected 'ambig' or 'disambig', got {condition!r}", path=file, line=line, field="context_condition")
    if polarity not in ("neg", "nonneg"):
        raise InputError(f"expected 'neg' or 'nonneg', got {polarity!r}", path=file, line=line, field="question_polarity")
    info = rec["answer_info"]
    try:
        pairs = [(str(info[f"ans{i}"][0]), str(info[f"ans{i}"][1])) for i in range(3)]
    except (KeyError, IndexError, TypeError):
        raise InputError("expected {'ans0': [name, group], 'ans1': ..., 'ans2': ...}", path=file, line=line, field="answer_info") from None
    unknown = [i for i, (_, g) in enumerate(pairs) if g.strip().lower() == "unknown"]
    if len(unknown) != 1:
        raise InputError(f"expected exactly one answer of group 'unknown', found {len(unknown)}", path=file, line=line, field="answer_info")
    meta = rec.get("additional_metadata") or {}
    stereotyped = {_norm(str(s)) for s in (meta.get("stereotyped_groups") or [])} if isinstance(meta, dict) else set()
    hits = [i for i, (name, g) in enumerate(pairs) if i != unknown[0] and (_norm(g) in stereotyped or name.strip().lower() in stereotyped)]
    return BBQItem(str(rec.get("example_id", line)), str(rec.get("category", "")), condition, polarity, str(rec["context"]),
                   str(rec["question"]), (answers[0], answers[1], answers[2]), label, unknown[0], hits[0] if len(hits) == 1 else None)


def read_bbq(path: str | Path, *, limit: int | None = None) -> list[BBQItem]:
    """BBQ items from one JSONL file (``limit``: the first that many).

    Raises:
        InputError: a record missing a field, or with a bad label, condition, polarity or answer_info (file and line named).
    """
    file = Path(path)
    items: list[BBQItem] = []
    for line, rec in read_records(file, what="BBQ file"):
        if limit is not None and len(items) >= limit:
            break
        items.append(_bbq_item(rec, file, line))
    if not items:
        raise InputError("no BBQ questions in the file", path=file)
    return items


def load_bbq(paths: Sequence[str | Path] = (), *, limit: int | None = None) -> list[BBQItem]:
    """BBQ items of every file in ``paths`` (each cut to ``limit``), or the built-in ``bbq_mini.jsonl`` when none."""
    files = list(paths) or [builtin_bias_path("bbq_mini.jsonl")]
    return [item for f in files for item in read_bbq(f, limit=limit)]


def read_crows(path: str | Path | None = None, *, limit: int | None = None) -> list[CrowsPair]:
    """CrowS-Pairs pairs from a CSV file (default: the built-in ``crows_mini.csv``).

    Raises:
        InputError: a missing column (file, line 1 and the column named) or an empty sentence (file and line).
    """
    file = Path(path) if path is not None else builtin_bias_path("crows_mini.csv")
    pairs: list[CrowsPair] = []
    for line, row in read_csv(file, what="CrowS-Pairs file", required=CROWS_COLUMNS):
        if limit is not None and len(pairs) >= limit:
            break
        for name in ("sent_more", "sent_less"):
            if not (row.get(name) or "").strip():
                raise InputError("expected a non-empty sentence", path=file, line=line, field=name)
        ident = (row.get("") or "").strip() or str(line)
        pairs.append(CrowsPair(ident, row["sent_more"].strip(), row["sent_less"].strip(), (row["stereo_antistereo"] or "").strip(),
                               (row["bias_type"] or "").strip()))
    if not pairs:
        raise InputError("no sentence pairs in the file", path=file)
    return pairs
