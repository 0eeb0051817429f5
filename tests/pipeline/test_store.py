"""Stage records' content hashes: what downstream fingerprints chain on, without the keys that say how a stage ran."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from alignscope.io import sha256_json, tensors_digest
from alignscope.pipeline.store import StageStore, content_digest


def test_provenance_is_kept_but_left_out_of_the_content(tmp_path: Path) -> None:
    store = StageStore(tmp_path)
    t = {"w": torch.arange(3.0)}
    a = store.save("s", "fp", {"rate": 0.5, "search_seconds": 1.25, "eval": {"n": 4, "seconds": 3.0}}, t,
                   provenance=("search_seconds", "eval.seconds"))
    b = store.save("s", "fp", {"rate": 0.5, "search_seconds": 9.5, "eval": {"n": 4, "seconds": 0.1}}, t,
                   provenance=("search_seconds", "eval.seconds"))
    assert a.content == b.content  # the same result, computed at another speed
    c = store.save("s", "fp", {"rate": 0.5, "search_seconds": 9.5, "eval": {"n": 5, "seconds": 0.1}}, t,
                   provenance=("search_seconds", "eval.seconds"))
    assert c.content != b.content  # a result changed
    loaded = store.load("s", "fp")
    assert loaded is not None and loaded.content == c.content and loaded.output["search_seconds"] == 9.5  # kept in the record
    assert json.loads((tmp_path / "stages" / "s.json").read_text(encoding="utf-8"))["provenance"] == ["search_seconds", "eval.seconds"]


def test_without_provenance_the_content_is_the_old_hash(tmp_path: Path) -> None:
    """Records written before provenance was declared load with the content they had, so their runs are still reused."""
    store = StageStore(tmp_path)
    output, tensors = {"rate": 0.5, "seconds": 2.0}, {"w": torch.ones(2)}
    saved = store.save("s", "fp", output, tensors)
    old = sha256_json([output, tensors_digest(tensors), []])
    assert saved.content == old and store.load("s", "fp").content == old  # type: ignore[union-attr]
    assert "provenance" not in json.loads((tmp_path / "stages" / "s.json").read_text(encoding="utf-8"))


def test_a_provenance_path_that_is_absent_changes_nothing(tmp_path: Path) -> None:
    out = {"a": 1, "b": [1, 2], "c": {"d": 2}}
    plain = content_digest(out, {}, tmp_path, [])
    assert content_digest(out, {}, tmp_path, [], ("x", "b.y", "c.e", "a.b")) == plain
    assert content_digest(out, {}, tmp_path, [], ("c.d",)) == content_digest({"a": 1, "b": [1, 2], "c": {}}, {}, tmp_path, [])
    assert out == {"a": 1, "b": [1, 2], "c": {"d": 2}}  # the output itself is left whole
