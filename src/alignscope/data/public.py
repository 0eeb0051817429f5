"""Loaders for public prompt and preference formats.

* AdvBench ``harmful_behaviors.csv`` (columns ``goal``, ``target``) -> :class:`PromptSet`, label ``harmful``.
* refusal_direction JSON (a list of ``{"instruction": ..., "category": ...}``) -> :class:`PromptSet`,
  with the label the caller gives (``harmful_train.json`` -> ``harmful``).
* XSTest CSV (``prompt``, ``type``, ``label`` safe/unsafe; v1 ``id`` or v2 ``id_v2``) -> :class:`PromptSet`.
* HH-RLHF chosen/rejected JSONL or JSONL.gz -> list of :class:`PreferencePair`.

:func:`load_any` dispatches on a kind name, or guesses it from the file. Every error is an
:class:`~alignscope.errors.InputError` naming the file, the line (or item) and the field.

Example:
    >>> pairs = load_hh_rlhf("harmless-base/test.jsonl.gz", limit=2)  # doctest: +SKIP
    >>> pairs[0].prompt.endswith("Assistant:")  # doctest: +SKIP
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignscope.data.prompts import Prompt, PromptSet, load_prompts
from alignscope.errors import InputError
from alignscope.tables import read_csv, read_json, read_records, read_text

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
KINDS = ("auto", "prompts", "advbench", "refusal_direction", "xstest", "hh_rlhf")
XSTEST_LABELS = {"safe": "harmless", "unsafe": "harmful"}


@dataclass(frozen=True)
class PreferencePair:
    """One HH-RLHF comparison.

    Attributes:
        prompt: the shared transcript up to and including the last ``"\\n\\nAssistant:"`` marker.
        chosen: the preferred final assistant reply (stripped).
        rejected: the dispreferred final assistant reply (stripped).
        chosen_text: the full chosen transcript, as in the file.
        rejected_text: the full rejected transcript, as in the file.
    """

    prompt: str
    chosen: str
    rejected: str
    chosen_text: str
    rejected_text: str

    @property
    def turns(self) -> list[tuple[str, str]]:
        """The ``(role, text)`` turns of the shared prompt, role ``"human"`` or ``"assistant"``."""
        return split_turns(self.prompt)

    @property
    def last_human(self) -> str:
        """The text of the final human turn: a single-turn prompt for chat templates."""
        humans = [text for role, text in self.turns if role == "human"]
        return humans[-1] if humans else ""


def split_turns(transcript: str) -> list[tuple[str, str]]:
    """Split an HH-RLHF transcript into ``(role, text)`` turns (texts stripped; an empty last turn is dropped).

    Example:
        >>> split_turns("\\n\\nHuman: hi\\n\\nAssistant: hello")
        [('human', 'hi'), ('assistant', 'hello')]
    """
    turns: list[tuple[str, str]] = []
    pos = 0
    while True:
        nh, na = transcript.find(HUMAN, pos), transcript.find(ASSISTANT, pos)
        starts = [(i, role, marker) for i, role, marker in ((nh, "human", HUMAN), (na, "assistant", ASSISTANT)) if i >= 0]
        if not starts:
            break
        i, role, marker = min(starts)
        if turns:
            turns[-1] = (turns[-1][0], transcript[pos:i].strip())
        turns.append((role, ""))
        pos = i + len(marker)
    if turns:
        turns[-1] = (turns[-1][0], transcript[pos:].strip())
        if not turns[-1][1]:
            turns.pop()
    return turns


# ---------------------------------------------------------------- reading helpers


def _text(value: Any, path: Path, line: int | None, field: str, unit: str = "") -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{unit}expected a non-empty string, got {value!r}", path=path, line=line, field=field)
    return value


def _finish(prompts: list[Prompt], path: Path, limit: int | None = None) -> PromptSet:
    if not prompts:
        raise InputError("the file holds no prompts", path=path)
    return PromptSet(prompts[:limit] if limit is not None else prompts, str(path))


# ---------------------------------------------------------------- prompt formats


def load_advbench(path: str | Path, *, limit: int | None = None) -> PromptSet:
    """Load AdvBench ``harmful_behaviors.csv``: each ``goal`` becomes a prompt labelled ``harmful``.

    Ids are ``advbench-<row>`` (1-based); the category is ``advbench``. The ``target`` column
    (the affirmative completion) is not part of a :class:`Prompt` and is dropped.

    Raises:
        InputError: a missing ``goal`` column or an empty goal (file, line and field named).
    """
    file = Path(path)
    prompts = [
        Prompt(_text(row.get("goal"), file, line, "goal"), "harmful", "advbench", f"advbench-{i}")
        for i, (line, row) in enumerate(read_csv(file, what="AdvBench CSV", required=("goal",)), start=1)
    ]
    return _finish(prompts, file, limit)


def load_refusal_direction(path: str | Path, label: str | None, *, limit: int | None = None) -> PromptSet:
    """Load a refusal_direction JSON split (a list of objects with ``instruction`` and optional ``category``).

    Args:
        path: e.g. ``harmful_train.json``.
        label: the label every prompt gets (``harmful`` for the harmful splits); None for none.
        limit: keep only the first ``limit`` prompts.

    Raises:
        InputError: invalid JSON, not a list, or an item without a string ``instruction``.
    """
    file = Path(path)
    data = read_json(file, what="refusal_direction JSON file")
    if not isinstance(data, list):
        raise InputError(f"expected a JSON list of objects, got {type(data).__name__}", path=file)
    prompts = []
    for i, item in enumerate(data, start=1):
        if not isinstance(item, Mapping):
            raise InputError(f"item {i}: expected an object, got {type(item).__name__}", path=file)
        text = _text(item.get("instruction"), file, None, "instruction", f"item {i}: ")
        category = item.get("category")
        if category is not None and not isinstance(category, str):
            raise InputError(f"item {i}: expected a string or null, got {category!r}", path=file, field="category")
        prompts.append(Prompt(text, label, category or None, f"{file.stem}-{i}"))
    return _finish(prompts, file, limit)


def load_xstest(path: str | Path, *, limit: int | None = None) -> PromptSet:
    """Load an XSTest CSV: ``prompt``, ``type`` (-> category), ``label`` safe/unsafe (-> harmless/harmful).

    Ids come from ``id`` or the v2 ``id_v2`` column (else the row number). Without a ``label``
    column, the v2 convention applies: types starting with ``contrast_`` are unsafe.

    Raises:
        InputError: a missing ``prompt`` column, an empty prompt or a label other than safe/unsafe.
    """
    file = Path(path)
    prompts = []
    for i, (line, row) in enumerate(read_csv(file, what="XSTest CSV", required=("prompt",)), start=1):
        text = _text(row.get("prompt"), file, line, "prompt")
        kind = (row.get("type") or "").strip() or None
        raw_label = (row.get("label") or "").strip().lower()
        if raw_label:
            if raw_label not in XSTEST_LABELS:
                raise InputError(f"expected one of {sorted(XSTEST_LABELS)}, got {raw_label!r}", path=file, line=line, field="label")
            label = XSTEST_LABELS[raw_label]
        elif kind is not None:
            label = "harmful" if kind.startswith("contrast_") else "harmless"
        else:
            raise InputError("no 'label' or 'type' value to tell safe from unsafe", path=file, line=line, field="label")
        pid = (row.get("id") or row.get("id_v2") or "").strip() or str(i)
        prompts.append(Prompt(text, label, kind, f"xstest-{pid}"))
    return _finish(prompts, file, limit)


# ---------------------------------------------------------------- HH-RLHF


def _common_prefix_length(a: str, b: str) -> int:
    lo, hi = 0, min(len(a), len(b))  # binary search on slice equality: the comparisons run in C
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if a[:mid] == b[:mid] else (lo, mid - 1)
    return lo


def _pair(record: dict[str, Any], path: Path, line: int) -> PreferencePair:
    chosen_text = _text(record.get("chosen"), path, line, "chosen")
    rejected_text = _text(record.get("rejected"), path, line, "rejected")
    shared = _common_prefix_length(chosen_text, rejected_text)
    cut = chosen_text.rfind(ASSISTANT, 0, shared)
    if cut < 0 or cut + len(ASSISTANT) > shared:
        missing = "chosen" if ASSISTANT not in chosen_text else "rejected"
        message = f"the transcripts share no '\\n\\nAssistant:' turn to split at; starts {chosen_text[:60]!r}"
        raise InputError(message, path=path, line=line, field=missing)
    end = cut + len(ASSISTANT)
    return PreferencePair(chosen_text[:end], chosen_text[end:].strip(), rejected_text[end:].strip(), chosen_text, rejected_text)


def load_hh_rlhf(path: str | Path, *, limit: int | None = None) -> list[PreferencePair]:
    """Load HH-RLHF comparisons from JSONL or JSONL.gz with ``chosen`` and ``rejected`` transcripts.

    The pair's ``prompt`` is the prefix both transcripts share, up to and including its last
    ``"\\n\\nAssistant:"``; ``chosen``/``rejected`` are the final replies after it. Splitting at the
    shared prefix (not at each text's last marker) keeps replies that themselves contain a fake
    ``Assistant:`` turn intact.

    Args:
        path: a ``.jsonl`` or ``.jsonl.gz`` file.
        limit: stop after this many pairs.

    Raises:
        InputError: a bad gzip stream, invalid UTF-8, an invalid JSON line, a missing field, or
            transcripts with no shared assistant turn (file, line and field named).
    """
    file = Path(path)
    pairs: list[PreferencePair] = []
    for lineno, record in read_records(file, what="HH-RLHF file", expected="an object with 'chosen' and 'rejected'"):
        if limit is not None and len(pairs) >= limit:
            break
        pairs.append(_pair(record, file, lineno))
    if not pairs and limit != 0:
        raise InputError("the file holds no chosen/rejected pairs", path=file)
    return pairs


# ---------------------------------------------------------------- dispatch


def _guess_kind(file: Path) -> str:
    name = file.name.lower()
    if name.endswith(".gz"):
        return "hh_rlhf"
    if name.endswith(".csv"):
        head = read_text(file).partition("\n")[0].lower()
        columns = {c.strip() for c in head.split(",")}
        if "goal" in columns:
            return "advbench"
        if "prompt" in columns and "type" in columns:
            return "xstest"
    if name.endswith(".json") and '"instruction"' in read_text(file)[:2000]:
        return "refusal_direction"
    if name.endswith(".jsonl") and '"chosen"' in read_text(file).partition("\n")[0]:
        return "hh_rlhf"
    return "prompts"


def load_any(path: str | Path, kind: str = "auto", *, label: str | None = None, limit: int | None = None) -> PromptSet | list[PreferencePair]:
    """Load a prompt or preference file of any supported kind.

    Args:
        path: the file.
        kind: one of :data:`KINDS`; ``auto`` guesses from the name and header (``.gz`` and JSONL
            with ``chosen`` -> hh_rlhf, CSV with ``goal`` -> advbench, CSV with ``prompt`` and
            ``type`` -> xstest, JSON with ``instruction`` -> refusal_direction, else prompts).
        label: for refusal_direction: the label to give; when None under ``auto``, ``harmful`` or
            ``harmless`` is taken from the file name if it contains exactly one of them.
        limit: keep at most this many items (ignored for plain prompt files).

    Returns:
        A :class:`PromptSet`, or a list of :class:`PreferencePair` for hh_rlhf.

    Raises:
        InputError: an unknown kind (valid ones listed) or any loader error.
    """
    if kind not in KINDS:
        raise InputError(f"unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}", field="kind")
    file = Path(path)
    if kind == "auto":
        kind = _guess_kind(file)
    if kind == "advbench":
        return load_advbench(file, limit=limit)
    if kind == "xstest":
        return load_xstest(file, limit=limit)
    if kind == "hh_rlhf":
        return load_hh_rlhf(file, limit=limit)
    if kind == "refusal_direction":
        if label is None:
            hits = [name for name in ("harmful", "harmless") if name in file.name.lower()]
            label = hits[0] if len(hits) == 1 else None
        return load_refusal_direction(file, label, limit=limit)
    return load_prompts(file)
