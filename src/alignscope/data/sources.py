"""The one prompt-source grammar every command takes: ``builtin:NAME[:SPLIT]``, ``hf:NAME[:SPLIT]`` or a file.

* ``builtin:harmful``, ``builtin:harmless:test``: a set shipped with alignscope (see
  :mod:`alignscope.data.builtin_sets`), optionally one of its fixed splits.
* ``hf:NAME[:SPLIT]``: a Hugging Face dataset in the local cache (needs ``datasets``; split
  ``train`` when not given), with a ``prompt`` column.
* anything else: a prompt file (``.jsonl``, ``.json``, ``.csv``, ``.tsv``; see
  :func:`alignscope.data.prompts.load_prompts`).

Example:
    >>> parse_source("builtin:harmful:test")
    PromptSource(kind='builtin', name='harmful', split='test')
    >>> str(parse_source("hf:org/set"))
    'hf:org/set'
    >>> ps = load_sources(["builtin:harmful:test", "builtin:harmless:test"])   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alignscope.data.builtin_sets import BUILTIN_SETS, SPLITS, load_builtin
from alignscope.data.prompts import PromptSet, load_prompts
from alignscope.errors import InputError

SourceKind = Literal["builtin", "hf", "file"]
GRAMMAR = "builtin:NAME[:SPLIT], hf:NAME[:SPLIT] or a prompt file"


@dataclass(frozen=True)
class PromptSource:
    """A parsed prompt source: its kind, the set name (or file path) and an optional split."""

    kind: SourceKind
    name: str
    split: str | None = None

    def __str__(self) -> str:
        """The spec string that parses back to this source."""
        if self.kind == "file":
            return self.name
        return f"{self.kind}:{self.name}" + (f":{self.split}" if self.split else "")


def split_spec(text: str, *, what: str, grammar: str, field: str, file_kinds: Sequence[str] = ()) -> tuple[str, str, str | None] | None:
    """``(kind, name, split)`` of ``builtin:NAME[:SPLIT]``, ``hf:NAME[:SPLIT]`` or ``KIND:PATH`` for a kind in
    ``file_kinds``; None when ``text`` has none of these prefixes. The one parser of every source grammar
    (prompt sources here, training sources in :mod:`alignscope.data.training.sources`).

    Raises:
        InputError: an empty name, path or split (``what`` and ``grammar`` word the message, ``field`` is named).
    """
    kind, sep, rest = text.partition(":")
    if not sep:
        return None
    if kind in file_kinds:
        if not rest.strip():
            raise InputError(f"{what} {text!r} names no file; expected {grammar}", field=field)
        return kind, rest, None
    if kind not in ("builtin", "hf"):
        return None
    name, has_split, split = rest.partition(":")
    if not name:
        raise InputError(f"{what} {text!r} names no set; expected {grammar}", field=field)
    if has_split and not split:
        raise InputError(f"{what} {text!r} has an empty split; expected {grammar}", field=field)
    return kind, name, split or None


def parse_source(spec: str | Path | PromptSource) -> PromptSource:
    """Parse ``builtin:NAME[:SPLIT]``, ``hf:NAME[:SPLIT]`` or a file path.

    Raises:
        InputError: an empty spec or name, an unknown built-in set or split (the valid ones
            listed), or an empty ``hf:`` split.
    """
    if isinstance(spec, PromptSource):
        return spec
    text = str(spec)
    parts = split_spec(text, what="prompt source", grammar=GRAMMAR, field="prompts")
    if parts is not None:
        kind, name, split = parts
        if kind == "builtin":
            _check_builtin(text, name, split)
            return PromptSource("builtin", name, split)
        return PromptSource("hf", name, split)
    if not text.strip():
        raise InputError(f"empty prompt source; expected {GRAMMAR}", field="prompts")
    return PromptSource("file", text)


def _check_builtin(text: str, name: str, split: str | None) -> None:
    if name not in BUILTIN_SETS:
        raise InputError(f"prompt source {text!r}: unknown built-in set {name!r}; valid names: {', '.join(BUILTIN_SETS)}",
                         field="prompts")
    if split is not None and split not in SPLITS:
        raise InputError(f"prompt source {text!r}: unknown split {split!r}; valid splits: {', '.join(SPLITS)}",
                         field="prompts")


def load_source(spec: str | Path | PromptSource, *, prompt_field: str = "prompt") -> PromptSet:
    """Load one prompt source.

    Args:
        spec: a source string (see :func:`parse_source`) or a parsed :class:`PromptSource`.
        prompt_field: the column holding the prompt text, in files and datasets.

    Raises:
        InputError: a bad spec, a bad file (file/line/field named), or a dataset that cannot be loaded.
    """
    source = parse_source(spec)
    if source.kind == "builtin":
        return load_builtin(source.name, split=source.split)
    if source.kind == "hf":
        return _load_hf(source, prompt_field)
    return load_prompts(source.name, prompt_field=prompt_field)


def load_sources(specs: Sequence[str | Path | PromptSource]) -> PromptSet:
    """Concatenate several sources in order.

    Raises:
        InputError: no source given, or any :func:`load_source` error.
    """
    if not specs:
        raise InputError(f"no prompt source given; pass {GRAMMAR}", field="prompts")
    sets = [load_source(s) for s in specs]
    out = sets[0]
    for more in sets[1:]:
        out = out + more
    return out


def _load_hf(source: PromptSource, prompt_field: str) -> PromptSet:
    try:
        import datasets  # optional dependency
    except ImportError:
        raise InputError("hf: prompt sets need the `datasets` package: pip install datasets", path=str(source)) from None
    try:
        ds = datasets.load_dataset(source.name, split=source.split or "train")
    except Exception as exc:  # datasets raises many types; surface its message plainly
        raise InputError(f"could not load the dataset: {exc}", path=str(source)) from None
    return PromptSet.from_records(ds, source=str(source), prompt_field=prompt_field)
