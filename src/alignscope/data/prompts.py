"""Prompt sets: a list of prompts with optional label, category, id and style, loaded from files.

Supported files: JSONL (one object per line), JSON (a list of objects, or an object with a
``prompts`` list) and CSV/TSV (a header row); :mod:`alignscope.data.sources` adds the built-in
sets and Hugging Face datasets. The schema is:

* ``prompt`` (required, non-empty string)
* ``label``, ``category``, ``id``, ``style`` (optional strings; ``style`` names how a prompt is
  phrased, such as ``casual`` or ``keywords``, so that cross-validation can hold out whole styles)

Every error names the file, the line (JSONL/CSV) or item (JSON), and the field.

Example:
    >>> ps = PromptSet.from_records([{"prompt": "hi", "label": "harmless"}])
    >>> ps.texts
    ['hi']
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from alignscope.errors import InputError
from alignscope.tables import parse_csv, parse_json, parse_jsonl, read_text

OPTIONAL_FIELDS = ("label", "category", "id", "style")


@dataclass(frozen=True)
class Prompt:
    """One prompt and its optional annotations."""

    prompt: str
    label: str | None = None
    category: str | None = None
    id: str | None = None
    style: str | None = None


class PromptSet(Sequence[Prompt]):
    """An immutable, ordered collection of :class:`Prompt` with a stable content hash."""

    def __init__(self, prompts: Iterable[Prompt], source: str = "<memory>") -> None:
        self._prompts = tuple(prompts)
        self.source = source

    def __len__(self) -> int:
        return len(self._prompts)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return PromptSet(self._prompts[index], self.source)
        return self._prompts[index]

    def __iter__(self) -> Iterator[Prompt]:
        return iter(self._prompts)

    def __repr__(self) -> str:
        return f"PromptSet(n={len(self)}, source={self.source!r})"

    @property
    def texts(self) -> list[str]:
        """The prompt strings, in order."""
        return [p.prompt for p in self._prompts]

    @property
    def labels(self) -> list[str | None]:
        """The labels, in order (None where absent)."""
        return [p.label for p in self._prompts]

    def filter(self, *, label: str | None = None, category: str | None = None) -> PromptSet:
        """The prompts with the given label and/or category."""
        kept = [p for p in self._prompts if (label is None or p.label == label) and (category is None or p.category == category)]
        return PromptSet(kept, self.source)

    def records(self) -> list[dict[str, Any]]:
        """Plain dicts, omitting absent optional fields."""
        return [{k: v for k, v in asdict(p).items() if v is not None} for p in self._prompts]

    def content_hash(self) -> str:
        """SHA-256 of the prompts and their annotations; identical sets hash identically."""
        payload = json.dumps(self.records(), sort_keys=True, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(payload).hexdigest()

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], source: str = "<memory>", prompt_field: str = "prompt") -> PromptSet:
        """Build from mappings, validating each one (``source`` names them in errors)."""
        return cls((_to_prompt(r, source, i + 1, "item", prompt_field) for i, r in enumerate(records)), source)

    @classmethod
    def from_texts(cls, texts: Iterable[str], label: str | None = None, category: str | None = None) -> PromptSet:
        """Build from bare strings, all with the same label/category."""
        return cls(Prompt(t, label, category) for t in texts)

    def __add__(self, other: PromptSet) -> PromptSet:
        return PromptSet(self._prompts + tuple(other), f"{self.source}+{other.source}")


def load_prompts(path: str | Path, *, prompt_field: str = "prompt") -> PromptSet:
    """Load a prompt set from a JSONL, JSON or CSV/TSV file.

    ``hf:NAME[:SPLIT]`` and ``builtin:NAME[:SPLIT]`` are prompt sources, not files: load them
    with :func:`alignscope.data.sources.load_source`.

    Args:
        path: the file.
        prompt_field: name of the column holding the prompt text.

    Raises:
        InputError: missing or empty file, invalid UTF-8, a missing column, or a bad record;
            the message names the file, line and field.
    """
    file = Path(path)
    what = "prompt file"
    if str(path).startswith(("hf:", "builtin:")) and not file.exists():
        what += " (for hf: and builtin: sources use alignscope.data.load_source)"
    text = read_text(file, what=what, empty="expected at least one prompt")
    suffix = file.suffix.lower()
    if suffix == ".jsonl":
        prompts = [_to_prompt(r, file, n, "line", prompt_field) for n, r in parse_jsonl(text, file)]
    elif suffix == ".json":
        prompts = _from_json(parse_json(text, file), file, prompt_field)
    elif suffix in (".csv", ".tsv"):
        rows = parse_csv(text, file, required=(prompt_field,), delimiter="\t" if suffix == ".tsv" else ",")
        prompts = [_to_prompt(row, file, n, "line", prompt_field) for n, row in rows]
    else:
        raise InputError(f"unsupported extension {suffix!r}; expected .jsonl, .json, .csv or .tsv", path=file)
    if not prompts:
        raise InputError("the file holds no prompts", path=file)
    return PromptSet(prompts, str(file))


def _to_prompt(record: Any, source: str | Path, index: int, unit: str, prompt_field: str) -> Prompt:
    where: dict[str, Any] = {"path": source}
    if unit == "line":
        where["line"] = index
    loc = "" if unit == "line" else f"{unit} {index}: "
    if not isinstance(record, Mapping):
        raise InputError(f"{loc}expected an object with a {prompt_field!r} field, got {type(record).__name__}", **where)
    if prompt_field not in record:
        raise InputError(f"{loc}missing required field; fields present: {sorted(record)}", field=prompt_field, **where)
    text = record[prompt_field]
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{loc}expected a non-empty string, got {text!r}", field=prompt_field, **where)
    extras: dict[str, str | None] = {}
    for name in OPTIONAL_FIELDS:
        value = record.get(name)
        if value is not None and not isinstance(value, (str, int)):
            raise InputError(f"{loc}expected a string, got {type(value).__name__}", field=name, **where)
        extras[name] = None if value in (None, "") else str(value)
    return Prompt(text, **extras)


def _from_json(data: Any, file: Path, prompt_field: str) -> list[Prompt]:
    if isinstance(data, Mapping) and isinstance(data.get("prompts"), list):
        data = data["prompts"]
    if not isinstance(data, list):
        raise InputError("expected a JSON list of objects (or an object with a 'prompts' list)", path=file)
    return [_to_prompt(r, file, i + 1, "item", prompt_field) for i, r in enumerate(data)]
