from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from alignscope.data.builtin_sets import BUILTIN_SETS, SPLITS, builtin_path, builtin_splits, load_builtin, split_of
from alignscope.data.prompts import Prompt
from alignscope.errors import InputError

MINIMUM = {"harmful": (160, 10, 12), "harmless": (160, 10, 12), "lookalike": (60, 1, 60)}  # n, categories, per category
FIELDS = {"id", "prompt", "label", "category", "split", "style"}
# How each style is phrased, as a word-count range: keyword queries are short, prompts with context long.
STYLE_WORDS = {"question": (8, 30), "request": (8, 30), "task": (8, 30), "casual": (5, 25), "context": (30, 70),
               "keywords": (2, 7), "framed": (12, 40)}


def raw_records(name: str) -> list[dict[str, str]]:
    lines = builtin_path(name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


@pytest.mark.parametrize("name", BUILTIN_SETS)
def test_schema_ids_and_labels(name: str) -> None:
    records = raw_records(name)
    expected_label = "harmful" if name == "harmful" else "harmless"
    for i, rec in enumerate(records, start=1):
        assert set(rec) == FIELDS, rec
        assert rec["id"] == f"{name}-{i:03d}"
        assert rec["label"] == expected_label
        assert rec["split"] in SPLITS
        assert rec["prompt"] == rec["prompt"].strip() and rec["category"]
        low, high = STYLE_WORDS[rec["style"]]
        assert low <= len(rec["prompt"].split()) <= high, rec["prompt"]
    if name == "lookalike":
        assert {r["category"] for r in records} == {"lookalike"}


@pytest.mark.parametrize("name", BUILTIN_SETS)
def test_counts_and_categories(name: str) -> None:
    n_min, n_categories, per_category = MINIMUM[name]
    prompts = load_builtin(name)
    counts = Counter(p.category for p in prompts)
    assert len(prompts) >= n_min
    assert len(counts) >= n_categories
    assert min(counts.values()) >= per_category, counts


@pytest.mark.parametrize("name", BUILTIN_SETS)
def test_splits_are_stratified_per_category(name: str) -> None:
    records = raw_records(name)
    for category in {r["category"] for r in records}:
        in_cat = [r["split"] for r in records if r["category"] == category]
        share = {s: in_cat.count(s) / len(in_cat) for s in SPLITS}
        assert all(in_cat.count(s) >= 1 for s in SPLITS), (category, share)
        assert 0.40 <= share["train"] <= 0.60 and 0.12 <= share["val"] <= 0.28 and 0.22 <= share["test"] <= 0.38, (category, share)


def test_no_duplicates_within_or_across_sets() -> None:
    texts = [normalise(r["prompt"]) for name in BUILTIN_SETS for r in raw_records(name)]
    dupes = [t for t, c in Counter(texts).items() if c > 1]
    assert not dupes


def test_harmless_and_harmful_have_similar_length() -> None:
    """No gross length cue for a probe to learn: overall, and within each style."""
    def mean_words(records: list[dict[str, str]]) -> float:
        return sum(len(r["prompt"].split()) for r in records) / len(records)

    harmful, harmless = raw_records("harmful"), raw_records("harmless")
    assert abs(mean_words(harmful) - mean_words(harmless)) < 2.5
    for style in STYLE_WORDS:
        pair = [mean_words([r for r in records if r["style"] == style]) for records in (harmful, harmless)]
        assert max(pair) / min(pair) < 1.4, (style, pair)


def test_every_style_is_in_every_set_and_split() -> None:
    """A style confined to one label would let a probe learn phrasing instead of harm."""
    for name in BUILTIN_SETS:
        counts = Counter((r["style"], r["split"]) for r in raw_records(name))
        assert all(counts[(style, split)] >= 4 for style in STYLE_WORDS for split in SPLITS), (name, counts)
    for name in BUILTIN_SETS:
        assert all(p.style in STYLE_WORDS for p in load_builtin(name))


@pytest.mark.parametrize("name", BUILTIN_SETS)
def test_load_builtin_splits_partition_the_file(name: str) -> None:
    records = raw_records(name)
    everything = load_builtin(name)
    assert everything.records() == [{k: v for k, v in r.items() if k != "split"} for r in records]
    parts = {s: load_builtin(name, split=s) for s in SPLITS}
    for split, part in parts.items():
        assert [p.id for p in part] == [r["id"] for r in records if r["split"] == split]
        assert all(split_of(p) == split and split_of(str(p.id)) == split for p in part)
    assert sum(len(p) for p in parts.values()) == len(everything)
    assert builtin_splits(name) == {r["id"]: r["split"] for r in records}


def test_errors_list_valid_names_and_splits() -> None:
    with pytest.raises(InputError, match="harmful, harmless, lookalike"):
        load_builtin("evil")
    with pytest.raises(InputError, match="train, val, test"):
        load_builtin("harmful", split="dev")
    with pytest.raises(InputError, match="harmful-001"):
        split_of("advbench-3")
    with pytest.raises(InputError):
        split_of(Prompt("x"))
    with pytest.raises(InputError):
        builtin_path("../etc")


def test_builtin_path_is_inside_the_package() -> None:
    import alignscope

    package_dir = Path(alignscope.__file__).resolve().parent
    for name in BUILTIN_SETS:
        path = builtin_path(name)
        assert path.is_file() and path.resolve() == package_dir / "data" / "builtin" / f"{name}.jsonl"
