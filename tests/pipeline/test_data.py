from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from alignscope.data.builtin_sets import load_builtin
from alignscope.data.prompts import PromptSet
from alignscope.errors import InputError
from alignscope.pipeline.data import resolve_data, round_robin, split_source


def test_round_robin_covers_categories() -> None:
    ps = PromptSet.from_records([{"prompt": f"{c}{i}", "category": c} for c in "abc" for i in range(3)])
    assert round_robin(ps, 4).texts == ["a0", "b0", "c0", "a1"]
    assert round_robin(ps, None) is ps and len(round_robin(ps, 50)) == 9


def test_builtin_splits_are_the_fixed_ones_and_disjoint() -> None:
    data = resolve_data("builtin:harmful", "builtin:harmless", "builtin:lookalike", caps={"train": 20, "val": 8, "test": None}, seed=0)
    assert len(data.harmful["train"]) == 20 and len(data.harmful["val"]) == 8
    assert data.harmful["test"].texts == load_builtin("harmful", split="test").texts
    ids = {split: {p.id for p in data.harmful[split]} for split in ("train", "val", "test")}
    assert not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"]) and not (ids["train"] & ids["val"])
    assert len({p.category for p in data.harmful["train"]}) >= 10  # the cap is spread over categories
    assert {p.label for p in data.lookalike["test"]} == {"harmless"}
    assert data.test_set().labels.count("harmful") == len(data.harmful["test"])


def test_file_split_is_seeded_and_labels_filled(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"p{i}"}) + "\n" for i in range(10)), encoding="utf-8")
    a, b, c = split_source(str(path), 0), split_source(str(path), 0), split_source(str(path), 1)
    assert [len(a[s]) for s in ("train", "val", "test")] == [5, 2, 3]
    assert a["test"].texts == b["test"].texts and a["test"].texts != c["test"].texts
    assert sorted(a["train"].texts + a["val"].texts + a["test"].texts) == sorted(f"p{i}" for i in range(10))
    data = resolve_data(str(path), str(path), None, caps={}, seed=0)
    assert set(data.harmful["train"].labels) == {"harmful"} and len(data.lookalike["test"]) == 0


def test_builtin_with_split_is_rejected() -> None:
    with pytest.raises(InputError, match="fixed train/val/test"):
        split_source("builtin:harmful:test", 0)


def test_hf_source_is_split_like_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = [{"prompt": f"p{i}"} for i in range(10)]
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=lambda name, split: records))
    path = tmp_path / "h.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    from_hf, from_file = split_source("hf:org/set", 3), split_source(str(path), 3)
    assert {s: ps.texts for s, ps in from_hf.items()} == {s: ps.texts for s, ps in from_file.items()}
    assert from_hf["val"].source == "hf:org/set:val"
