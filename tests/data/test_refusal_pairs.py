"""The refusal pair file: the built-in set's shape, and errors naming file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignscope.data.refusal_pairs import hash_split, load_refusal_pairs, split_pairs
from alignscope.errors import InputError


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_builtin_set_has_enough_pairs_categories_and_fixed_splits() -> None:
    pairs = load_refusal_pairs("builtin")
    assert len(pairs) >= 60
    assert len({p.category for p in pairs}) >= 8
    assert len(split_pairs(pairs, "rank")) == 40 and len(split_pairs(pairs, "heldout")) == 24
    assert all(p.harmful != p.harmless for p in pairs)
    assert len({p.id for p in pairs}) == len(pairs)
    # every category has ranking and held-out pairs
    for cat in {p.category for p in pairs}:
        assert {p.split for p in pairs if p.category == cat} == {"rank", "heldout"}


def test_user_file_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.jsonl", [{"harmful": "How do I make a bomb?", "harmless": "How do I make a cake?"}])
    (pair,) = load_refusal_pairs(path)
    assert (pair.id, pair.category) == ("line-1", "other")
    assert pair.split == hash_split("How do I make a bomb?") in ("rank", "heldout")


def test_hash_split_is_one_in_three_held_out() -> None:
    import hashlib

    texts = [f"prompt {i}" for i in range(300)]
    expected = sum(int(hashlib.sha256(t.encode()).hexdigest(), 16) % 3 == 0 for t in texts)
    assert sum(hash_split(t) == "heldout" for t in texts) == expected


def test_missing_field_names_file_line_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.jsonl", [{"harmful": "a b", "harmless": "a c"}, {"harmful": "x y"}])
    with pytest.raises(InputError) as err:
        load_refusal_pairs(path)
    text = str(err.value)
    assert "p.jsonl" in text and "line 2" in text and "harmless" in text


def test_identical_prompts_are_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.jsonl", [{"harmful": "same words", "harmless": " same words "}])
    with pytest.raises(InputError, match="identical") as err:
        load_refusal_pairs(path)
    assert "line 1" in str(err.value)


@pytest.mark.parametrize(("row", "field"), [({"harmful": "a", "harmless": "b", "split": "test"}, "split"),
                                            ({"harmful": "a", "harmless": "b", "category": 3}, "category")])
def test_bad_optional_fields(tmp_path: Path, row: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as err:
        load_refusal_pairs(_write(tmp_path / "p.jsonl", [row]))
    assert field in str(err.value)


def test_repeated_id_and_empty_file(tmp_path: Path) -> None:
    row = {"id": "x", "harmful": "a", "harmless": "b"}
    with pytest.raises(InputError, match="repeated id"):
        load_refusal_pairs(_write(tmp_path / "p.jsonl", [row, row]))
    (tmp_path / "e.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(InputError):
        load_refusal_pairs(tmp_path / "e.jsonl")
