from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignscope.errors import ResumeMismatchError
from alignscope.resume import MARKER_FILE, claim, read_marker, same_run


def test_same_run_fresh_resume_and_mismatch(tmp_path: Path) -> None:
    kw = {"where": tmp_path, "what": "a capture", "inputs": "prompts"}
    assert same_run(None, "a", **kw) is False
    assert same_run("a", "a", **kw) is True
    with pytest.raises(ResumeMismatchError, match=rf"{tmp_path} holds a capture of different inputs \(prompts differ\)"):
        same_run("b", "a", **kw)
    assert same_run("b", "a", **kw, on_mismatch="redo") is False


def test_claim_writes_the_marker_once_and_refuses_another_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert claim(run, "fp1", what="x", inputs="y") is False
    assert json.loads((run / MARKER_FILE).read_text()) == {"fingerprint": "fp1"}
    assert claim(run, "fp1", what="x", inputs="y") is True
    with pytest.raises(ResumeMismatchError, match="run holds x"):
        claim(run, "fp2", what="x", inputs="y")
    assert read_marker(run) == "fp1"
    (run / MARKER_FILE).write_text("[1, 2]")
    assert read_marker(run) is None and read_marker(tmp_path / "nowhere") is None
