"""The --data grammar of `alignscope deltas`: HH-RLHF chosen/rejected transcripts and built-in group sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignscope.data.builtin_sets import load_builtin
from alignscope.data.text_groups import load_text_groups
from alignscope.errors import InputError

PAIRS = [{"chosen": "\n\nHuman: hi\n\nAssistant: hello!", "rejected": "\n\nHuman: hi\n\nAssistant: go away"},
         {"chosen": "\n\nHuman: help me\n\nAssistant: sure", "rejected": "\n\nHuman: help me\n\nAssistant: no"}]


def test_hh_file_gives_the_full_transcripts(tmp_path: Path) -> None:
    path = tmp_path / "hh.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    for spec in (str(path), f"hh:{path}"):
        groups = load_text_groups(spec)
        assert groups.chosen == tuple(p["chosen"] for p in PAIRS) and groups.rejected == tuple(p["rejected"] for p in PAIRS)
    assert load_text_groups(path, limit=1).chosen == (PAIRS[0]["chosen"],)
    assert load_text_groups(path).to_json()["n_rejected"] == 2


def test_builtin_harm_is_harmless_vs_harmful() -> None:
    groups = load_text_groups("builtin:harm:test")
    assert list(groups.chosen) == [p.prompt for p in load_builtin("harmless", split="test")]
    assert list(groups.rejected) == [p.prompt for p in load_builtin("harmful", split="test")]
    assert len(load_text_groups("builtin:harm", limit=5).rejected) == 5
    assert load_text_groups("builtin:harm:test").sha256 != load_text_groups("builtin:harm:val").sha256


@pytest.mark.parametrize(("spec", "message"), [
    ("builtin:nope", "unknown built-in group set 'nope'; valid names: harm"),
    ("builtin:harm:dev", "unknown split 'dev'; valid splits: train, val, test"),
    ("hf:Anthropic/hh-rlhf", "hf: datasets are not supported here"),
    ("hh:", "names no file"),
])
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_text_groups(spec)


def test_bad_hh_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "hh.jsonl"
    path.write_text(json.dumps(PAIRS[0]) + "\n{not json\n")
    with pytest.raises(InputError, match="line 2"):
        load_text_groups(path)
