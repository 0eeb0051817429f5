"""Record files in and out: text, JSON, JSONL and CSV, with errors that name the file, line and field.

Every reader in alignscope parses through here, so that a bad file gets the same message
whichever command reads it (``prompts.jsonl, line 3: invalid JSON: Expecting value (column 1)``).
Callers keep their own record validation (which fields they need); this module only turns
bytes into records with their line numbers.

Example:
    >>> from pathlib import Path
    >>> list(parse_jsonl('{"a": 1}\\n\\n{"a": 2}\\n', Path("x.jsonl")))
    [(1, {'a': 1}), (3, {'a': 2})]
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from alignscope.errors import InputError
from alignscope.io import atomic_write_text

Row = tuple[int, dict[str, str]]
TOO_DEEP = "invalid JSON: nested deeper than the parser allows; expected a flat record"


def read_text(path: str | Path, *, what: str = "file", empty: str = "") -> str:
    """A UTF-8 text file (a leading BOM dropped; gunzipped when it ends in ``.gz``).

    Args:
        path: the file.
        what: what the file is, for the missing-file message (``"prompt file does not exist"``).
        empty: a hint appended to the empty-file message (what the file should hold).

    Raises:
        InputError: a missing or unreadable file, bad gzip, invalid UTF-8 (with the line), or a
            file holding only whitespace; the message names the path.
    """
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{what} does not exist", path=file)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {what}: {exc.strerror or exc}", path=file) from None
    if file.suffix.lower() == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"not a valid gzip file ({exc})", path=file) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"invalid UTF-8 at byte {exc.start}; save the file as UTF-8", path=file, line=line) from None
    if not text.strip():
        raise InputError("the file is empty" + (f"; {empty}" if empty else ""), path=file)
    return text


def parse_json(text: str, path: str | Path) -> Any:
    """The JSON document ``text`` (read from ``path``, which errors name with the line)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=path, line=exc.lineno) from None
    except RecursionError:
        raise InputError(TOO_DEEP, path=path) from None


def parse_jsonl(text: str, path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` of every non-blank line of JSONL ``text`` (1-based), parsed lazily.

    Lines are split at ``\\n`` only, so that a JSON string holding U+2028 or U+0085 stays whole.
    A bad line raises when the iteration reaches it, so a reader that stops early parses no more.
    """
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=path, line=lineno) from None
        except RecursionError:
            raise InputError(TOO_DEEP, path=path, line=lineno) from None
        yield lineno, value


def parse_csv(text: str, path: str | Path, *, required: Sequence[str] = (), delimiter: str = ",") -> list[Row]:
    """``(line number, row)`` of every data row of CSV ``text`` with a header row (names stripped).

    The line number is the physical line the row ends on, so multi-line quoted cells count.

    Raises:
        InputError: a ``required`` column is not in the header (line 1, the column and the header named).
    """
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    try:
        fieldnames = reader.fieldnames
    except csv.Error as exc:
        raise InputError(f"invalid CSV header: {exc}", path=path, line=1) from None
    header = [h.strip() for h in fieldnames or []]
    reader.fieldnames = header
    for name in required:
        if name not in header:
            needs = f"; required columns: {', '.join(required)}" if len(required) > 1 else ""
            raise InputError(f"missing required column; header has {header}{needs}", path=path, line=1, field=name)
    rows: list[Row] = []
    try:
        for row in reader:
            rows.append((reader.line_num, row))
    except csv.Error as exc:  # a cell over the csv module's size limit, a NUL byte, a broken quote
        raise InputError(f"invalid CSV: {exc}", path=path, line=reader.line_num + 1) from None
    return rows


def read_json(path: str | Path, *, what: str = "file") -> Any:
    """The JSON document in ``path`` (see :func:`read_text` and :func:`parse_json` for the errors)."""
    return parse_json(read_text(path, what=what, empty="expected a JSON document"), path)


def read_jsonl(path: str | Path, *, what: str = "file") -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` of every non-blank line of a JSONL file (``.jsonl.gz`` too).

    The file is read (and its missing/empty/encoding errors raised) now; lines parse as iterated.
    """
    return parse_jsonl(read_text(path, what=what, empty="expected one JSON object per line"), path)


def read_records(path: str | Path, *, what: str = "file", expected: str = "a JSON object") -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` of every non-blank line of a JSONL file whose lines must be JSON objects.

    The file is read now (see :func:`read_text`: a BOM dropped, ``.gz`` unpacked, missing, empty
    and non-UTF-8 files raise); lines parse as iterated (see :func:`parse_jsonl`).

    Args:
        path: the file.
        what: what the file is, for the missing-file message.
        expected: what each line should hold, for the message of a line that is not an object
            (``"a JSON object with fields clean, corrupt"``).

    Raises:
        InputError: a line that is not a JSON object (``pairs.jsonl, line 3: expected a JSON
            object, got list``), besides the errors of :func:`read_jsonl`.
    """
    return _objects(read_jsonl(path, what=what), path, expected)


def _objects(rows: Iterator[tuple[int, Any]], path: str | Path, expected: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, value in rows:
        if not isinstance(value, dict):
            raise InputError(f"expected {expected}, got {type(value).__name__}", path=path, line=lineno)
        yield lineno, value


def read_csv(path: str | Path, *, what: str = "file", required: Sequence[str] = (), delimiter: str = ",") -> list[Row]:
    """``(line number, row)`` of every data row of a CSV file with a header row (see :func:`parse_csv`)."""
    text = read_text(path, what=what, empty="expected a header row and one row per item")
    return parse_csv(text, path, required=required, delimiter=delimiter)


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Path:
    """Write rows as CSV with a header row, atomically, lines ending in ``\\n``.

    Args:
        path: the file.
        rows: mappings from column name to value (None becomes an empty cell).
        columns: the columns in order; keys of a row outside them are left out. None takes every
            key in first-seen order. With no rows and no columns the file is empty.

    Returns:
        ``path``.
    """
    rows = list(rows)
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    buf = io.StringIO()
    if columns:
        writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())
    return Path(path)
