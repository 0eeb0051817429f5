"""Prompt sets: a list of prompts with optional label, category and id, loaded from files.

Supported files: JSONL (one object per line), JSON (a list of objects, or an object with a
``prompts`` list), CSV (a header row), and Hugging Face ``datasets`` (``hf:NAME[:SPLIT]``,
when the library is installed and the data is in the local cache). The schema is:

* ``prompt`` (required, non-empty string)
* ``label``, ``category``, ``id`` (optional strings)

Every error names the file, the line (JSONL/CSV) or item (JSON), and the field.

Example:
    >>> ps = PromptSet.from_records([{"prompt": "hi", "label": "harmless"}])
    >>> ps.texts
    ['hi']
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from alignscope.errors import InputError

OPTIONAL_FIELDS = ("label", "category", "id")


@dataclass(frozen=True)
class Prompt:
    """One prompt and its optional annotations."""

    prompt: str
    label: str | None = None
    category: str | None = None
    id: str | None = None


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
    """Load a prompt set from a JSONL, JSON or CSV file, or ``hf:NAME[:SPLIT]``.

    Args:
        path: file path, or ``hf:`` followed by a dataset name and optional split.
        prompt_field: name of the column holding the prompt text.

    Raises:
        InputError: missing or empty file, invalid UTF-8, a missing column, or a bad record;
            the message names the file, line and field.
    """
    text_path = str(path)
    if text_path.startswith("hf:"):
        return _load_hf(text_path[3:], prompt_field)
    file = Path(path)
    text = read_text_file(file, what="prompt file", empty="expected at least one prompt")
    suffix = file.suffix.lower()
    if suffix == ".jsonl":
        prompts = _parse_jsonl(text, file, prompt_field)
    elif suffix == ".json":
        prompts = _parse_json(text, file, prompt_field)
    elif suffix in (".csv", ".tsv"):
        prompts = _parse_csv(text, file, prompt_field, delimiter="\t" if suffix == ".tsv" else ",")
    else:
        raise InputError(f"unsupported extension {suffix!r}; expected .jsonl, .json, .csv or .tsv", path=file)
    if not prompts:
        raise InputError("the file holds no prompts", path=file)
    return PromptSet(prompts, str(file))


def read_text_file(path: Path, *, what: str = "file", empty: str = "") -> str:
    """Read a UTF-8 text file (gunzipped when it ends in ``.gz``) with errors that name the file and line.

    Raises:
        InputError: missing file, bad gzip, invalid UTF-8 (with the line), or an empty file.
    """
    if not path.is_file():
        raise InputError(f"{what} does not exist", path=path)
    raw = path.read_bytes()
    if path.suffix.lower() == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"not a valid gzip file ({exc})", path=path) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"invalid UTF-8 at byte {exc.start}; save the file as UTF-8", path=path, line=line) from None
    if not text.strip():
        raise InputError("the file is empty" + (f"; {empty}" if empty else ""), path=path)
    return text


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


def _parse_jsonl(text: str, file: Path, prompt_field: str) -> list[Prompt]:
    prompts = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=file, line=lineno) from None
        prompts.append(_to_prompt(record, file, lineno, "line", prompt_field))
    return prompts


def _parse_json(text: str, file: Path, prompt_field: str) -> list[Prompt]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=file, line=exc.lineno) from None
    if isinstance(data, Mapping) and isinstance(data.get("prompts"), list):
        data = data["prompts"]
    if not isinstance(data, list):
        raise InputError("expected a JSON list of objects (or an object with a 'prompts' list)", path=file)
    return [_to_prompt(r, file, i + 1, "item", prompt_field) for i, r in enumerate(data)]


def _parse_csv(text: str, file: Path, prompt_field: str, delimiter: str) -> list[Prompt]:
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    header = reader.fieldnames or []
    if prompt_field not in header:
        raise InputError(f"missing required column; header has {header}", path=file, line=1, field=prompt_field)
    prompts = []
    for row in reader:
        # DictReader's line_num is the physical line just read, which handles multi-line cells.
        prompts.append(_to_prompt(row, file, reader.line_num, "line", prompt_field))
    return prompts


def _load_hf(spec: str, prompt_field: str) -> PromptSet:
    name, _, split = spec.partition(":")
    try:
        import datasets
    except ImportError:
        raise InputError("hf: prompt sets need the `datasets` package: pip install datasets", path=f"hf:{spec}") from None
    try:
        ds = datasets.load_dataset(name, split=split or "train")
    except Exception as exc:  # datasets raises many types; surface its message plainly
        raise InputError(f"could not load the dataset: {exc}", path=f"hf:{spec}") from None
    return PromptSet.from_records(ds, source=f"hf:{spec}", prompt_field=prompt_field)  # type: ignore[arg-type]
