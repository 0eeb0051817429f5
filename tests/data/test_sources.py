"""The prompt-source grammar: builtin:NAME[:SPLIT], hf:NAME[:SPLIT] or a file."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from alignscope.data.builtin_sets import load_builtin
from alignscope.data.prompts import load_prompts
from alignscope.data.sources import PromptSource, load_source, load_sources, parse_source
from alignscope.errors import InputError


@pytest.mark.parametrize(("spec", "expected"), [
    ("builtin:harmful", PromptSource("builtin", "harmful")),
    ("builtin:lookalike:val", PromptSource("builtin", "lookalike", "val")),
    ("hf:org/set", PromptSource("hf", "org/set")),
    ("hf:org/set:test", PromptSource("hf", "org/set", "test")),
    ("prompts.jsonl", PromptSource("file", "prompts.jsonl")),
    ("dir/hf_prompts.csv", PromptSource("file", "dir/hf_prompts.csv")),
    ("C:x.jsonl", PromptSource("file", "C:x.jsonl")),
])
def test_grammar_round_trips(spec: str, expected: PromptSource) -> None:
    assert parse_source(spec) == expected
    assert str(expected) == spec and parse_source(str(expected)) == expected
    assert parse_source(expected) is expected
    assert parse_source(Path(spec)) == expected


@pytest.mark.parametrize(("spec", "fragment"), [
    ("builtin:", "names no set"),
    ("hf:", "names no set"),
    ("hf::train", "names no set"),
    ("builtin:harmful:", "empty split"),
    ("hf:org/set:", "empty split"),
    ("builtin:evil", "unknown built-in set 'evil'; valid names: harmful, harmless, lookalike"),
    ("builtin:harmful:dev", "unknown split 'dev'; valid splits: train, val, test"),
    ("builtin:harmful:test:x", "unknown split 'test:x'"),
    ("  ", "empty prompt source"),
])
def test_bad_specs(spec: str, fragment: str) -> None:
    with pytest.raises(InputError) as err:
        parse_source(spec)
    assert fragment in str(err.value) and "field 'prompts'" in str(err.value)


def test_load_builtin_and_files(tmp_path: Path) -> None:
    assert load_source("builtin:harmful:test").texts == load_builtin("harmful", split="test").texts
    assert len(load_source("builtin:harmless")) == len(load_builtin("harmless"))
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"p{i}"}) + "\n" for i in range(3)), encoding="utf-8")
    both = load_sources([str(path), "builtin:lookalike:val"])
    assert both.texts == ["p0", "p1", "p2", *load_builtin("lookalike", split="val").texts]
    with pytest.raises(InputError, match="no prompt source given"):
        load_sources([])
    with pytest.raises(InputError, match=r"missing\.jsonl: prompt file does not exist"):
        load_source(tmp_path / "missing.jsonl")


def test_hf_without_datasets_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    with pytest.raises(InputError) as err:
        load_source("hf:org/set:test")
    assert str(err.value) == "hf:org/set:test: hf: prompt sets need the `datasets` package: pip install datasets"


def test_hf_loads_through_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []

    def load_dataset(name: str, split: str) -> list[dict[str, Any]]:
        calls.append((name, split))
        if name == "broken":
            raise FileNotFoundError("not in the cache")
        return [{"question": "q1", "label": "harmful"}, {"question": "q2"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    ps = load_source("hf:org/set", prompt_field="question")
    assert ps.texts == ["q1", "q2"] and ps.labels == ["harmful", None] and ps.source == "hf:org/set"
    assert calls == [("org/set", "train")]  # no split given -> train
    load_source(PromptSource("hf", "org/set", "test"), prompt_field="question")
    assert calls[-1] == ("org/set", "test")
    with pytest.raises(InputError, match=r"^hf:broken: could not load the dataset: not in the cache$"):
        load_source("hf:broken")


def test_load_prompts_points_sources_to_load_source() -> None:
    with pytest.raises(InputError, match="use alignscope.data.load_source"):
        load_prompts("hf:org/set")
