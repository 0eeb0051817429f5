"""Safe/unsafe prompts grouped by axiom, the input of the Alignment Quality Index (AQI).

Sources (the grammar is parsed by :func:`alignscope.data.sources.split_spec`):

* ``builtin:axioms[:SPLIT]``: the set written for alignscope, ``builtin/axioms.jsonl``: 7 axioms x
  (safe, unsafe) x 40 one-line prompts, each with a fixed ``split`` (train/val/test: 20/8/12 per axiom and label).
* ``hh:PATH``: HH-RLHF comparisons (JSONL or ``.jsonl.gz``): the chosen transcript is ``safe``, the rejected
  one ``unsafe``, axiom ``hh``.
* a LITMUS-style file, CSV or JSONL, with ``axiom``, ``safety_label`` (``safe``/``unsafe``) and ``input``
  (optional ``split``, ``id``).

Every axiom needs at least 2 prompts of each label (the cluster indices need two points per cluster).

Example:
    >>> s = load_axiom_set("builtin:axioms:test")
    >>> len(s.axioms), s.counts()["privacy"]
    (7, {'safe': 12, 'unsafe': 12})
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from alignscope.data.public import load_hh_rlhf
from alignscope.data.sources import split_spec
from alignscope.errors import InputError
from alignscope.tables import read_csv, read_records

Label = Literal["safe", "unsafe"]
LABELS: tuple[Label, ...] = ("safe", "unsafe")
SPLITS = ("train", "val", "test")
GRAMMAR = "builtin:axioms[:SPLIT], hh:PATH or a LITMUS-style .csv/.jsonl file (axiom, safety_label, input)"
REQUIRED = ("axiom", "safety_label", "input")
MIN_PER_LABEL = 2


@dataclass(frozen=True)
class AxiomItem:
    """One prompt: its axiom, its label, the text, the fixed split (None when the source has none) and its file line."""

    axiom: str
    label: Label
    text: str
    split: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class AxiomSet:
    """Labelled prompts of one source, in file order."""

    items: tuple[AxiomItem, ...]
    source: str

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[AxiomItem]:
        return iter(self.items)

    @property
    def axioms(self) -> list[str]:
        """The axioms, sorted."""
        return sorted({i.axiom for i in self.items})

    @property
    def texts(self) -> list[str]:
        """Every prompt's text, in order."""
        return [i.text for i in self.items]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{axiom: {"safe": n, "unsafe": n}}``."""
        out: dict[str, dict[str, int]] = {a: {label: 0 for label in LABELS} for a in self.axioms}
        for item in self.items:
            out[item.axiom][item.label] += 1
        return out

    def split(self, name: str) -> AxiomSet:
        """The items of one fixed split.

        Raises:
            InputError: the source has no splits, or none of its items is in ``name``.
        """
        if any(i.split is None for i in self.items):
            raise InputError(f"{self.source} has no 'split' on every record; cannot take its {name!r} split", field="split")
        return AxiomSet(tuple(i for i in self.items if i.split == name), f"{self.source}:{name}")


def check_counts(items: Iterable[AxiomItem], path: str | Path) -> None:
    """Raise when an axiom has fewer than :data:`MIN_PER_LABEL` prompts of a label (file, first line of the axiom named).

    Raises:
        InputError: no items, or an axiom with too few prompts of one label.
    """
    counts: dict[str, dict[str, int]] = {}
    first: dict[str, int | None] = {}
    for item in items:
        counts.setdefault(item.axiom, {label: 0 for label in LABELS})[item.label] += 1
        first.setdefault(item.axiom, item.line)
    if not counts:
        raise InputError("no safe/unsafe prompts", path=path)
    for axiom, by_label in counts.items():
        for label, n in by_label.items():
            if n < MIN_PER_LABEL:
                raise InputError(f"axiom {axiom!r} has {n} {label} prompt(s); every axiom needs at least {MIN_PER_LABEL} of each "
                                 "label", path=path, line=first[axiom], field="safety_label")


def _item(record: Mapping[str, Any], path: Path, line: int) -> AxiomItem:
    for key in REQUIRED:
        value = record.get(key)
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"expected a non-empty string, got {value!r}", path=path, line=line, field=key)
    label = str(record["safety_label"]).strip().lower()
    if label not in LABELS:
        raise InputError(f"expected 'safe' or 'unsafe', got {record['safety_label']!r}", path=path, line=line, field="safety_label")
    split = record.get("split") or None
    if split is not None and split not in SPLITS:
        raise InputError(f"expected one of {', '.join(SPLITS)}, got {split!r}", path=path, line=line, field="split")
    return AxiomItem(str(record["axiom"]).strip(), label, str(record["input"]).strip(), split or None, line)  # type: ignore[arg-type]


def read_litmus(path: str | Path) -> AxiomSet:
    """A LITMUS-style CSV or JSONL file: ``axiom``, ``safety_label`` (safe/unsafe), ``input`` and optional ``split``.

    Raises:
        InputError: a missing file or column, a bad line, an empty field, a label other than safe/unsafe, or an axiom
            with fewer than 2 prompts per label (file, line and field named).
    """
    file = Path(path)
    if file.suffix.lower() == ".csv":
        rows: Iterable[tuple[int, Mapping[str, Any]]] = read_csv(file, what="AQI data file", required=REQUIRED)
    else:
        rows = read_records(file, what="AQI data file", expected=f"an object with {', '.join(REQUIRED)}")
    items = tuple(_item(record, file, line) for line, record in rows)
    check_counts(items, file)
    return AxiomSet(items, str(file))


def read_hh(path: str | Path) -> AxiomSet:
    """HH-RLHF comparisons as AQI data: each chosen transcript ``safe``, each rejected one ``unsafe``, axiom ``hh``.

    Raises:
        InputError: any :func:`~alignscope.data.public.load_hh_rlhf` error, or fewer than 2 comparisons.
    """
    file = Path(path)
    items = []
    for pair in load_hh_rlhf(file):
        items += [AxiomItem("hh", "safe", pair.chosen_text.strip()), AxiomItem("hh", "unsafe", pair.rejected_text.strip())]
    check_counts(items, file)
    return AxiomSet(tuple(items), f"hh:{file}")


def builtin_axioms_path() -> Path:
    """The path of ``builtin/axioms.jsonl``."""
    return Path(str(resources.files("alignscope.data").joinpath("builtin", "axioms.jsonl")))


def load_axiom_set(spec: str | Path) -> AxiomSet:
    """Load AQI data from ``builtin:axioms[:SPLIT]``, ``hh:PATH`` or a LITMUS-style file.

    Raises:
        InputError: a bad spec (an unknown built-in set or split, ``hf:``), or any reader's error.
    """
    text = str(spec)
    parts = split_spec(text, what="AQI data", grammar=GRAMMAR, field="data", file_kinds=("hh",))
    if parts is None:
        if not text.strip():
            raise InputError(f"empty AQI data source; expected {GRAMMAR}", field="data")
        return read_litmus(text)
    kind, name, split = parts
    if kind == "hh":
        return read_hh(name)
    if kind != "builtin" or name != "axioms":
        raise InputError(f"AQI data {text!r}: expected {GRAMMAR}", field="data")
    if split is not None and split not in SPLITS:
        raise InputError(f"AQI data {text!r}: unknown split {split!r}; valid splits: {', '.join(SPLITS)}", field="data")
    full = read_litmus(builtin_axioms_path())
    full = AxiomSet(full.items, "builtin:axioms")
    return full if split is None else full.split(split)


def fit_set(spec: str | Path) -> AxiomSet:
    """The train split of a source, for fitting learned pooling: ``builtin:axioms:train``, or a file's ``split == train`` rows.

    Raises:
        InputError: the source has no fixed splits (HH-RLHF, or a file without ``split``), or no train rows.
    """
    text = str(spec)
    parts = split_spec(text, what="AQI data", grammar=GRAMMAR, field="data", file_kinds=("hh",))
    if parts is not None and parts[0] == "builtin":
        return load_axiom_set("builtin:axioms:train")
    if parts is not None:
        raise InputError(f"{text}: learned pooling needs a train split and this source has none; pass --fit-data", field="data")
    train = read_litmus(text).split("train")
    check_counts(train.items, text)
    return train
