"""The same command with the same seed gives identical results on CPU.

Every command of the secrets test (except ``run`` and ``compare``, whose resumed results the kill
tests compare with an uninterrupted run's) runs twice on a tiny model into two directories. The
JSON object on the last stdout line and every JSON, JSONL, CSV and safetensors file written must be
identical, compared as the kill tests compare a resumed run with an uninterrupted one
(:mod:`tests.hardening.result_files`: only wall-clock timings and the like are left out, and each
run's own directory reads as ``ROOT``). HTML and PNG files are not compared (they embed the same
numbers, drawn). See the README's "Reproducibility" section for CUDA.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from alignscope.cli import app
from tests.fake_openai import FakeOpenAI
from tests.hardening.result_files import json_differences, result_files, strip_ignored, tree_differences
from tests.hardening.test_secrets import commands

SKIPPED = ("run", "compare")
runner = CliRunner()


RESULTS = ("**/*.json", "**/*.jsonl", "**/*.csv", "**/*.safetensors")


def test_same_command_same_results(tiny_dir: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGNSCOPE_CACHE", str(tmp_path / "cache"))
    model = str(tiny_dir("llama"))
    printed: dict[str, dict[str, Any]] = {"a": {}, "b": {}}
    with FakeOpenAI(lambda text: "REFUSAL" if "hurt" in text else "4") as judge:
        for side in ("a", "b"):
            root = tmp_path / side
            root.mkdir()
            for name, args in commands(model, root, judge.url, root / "unused.yaml").items():
                if name in SKIPPED:
                    continue
                res = runner.invoke(app, args)
                assert res.exit_code == 0, f"{name}: {res.output}"
                printed[side][name] = strip_ignored(json.loads(res.stdout.strip().splitlines()[-1]), str(root))
    assert len(printed["a"]) == 16 and len(result_files(tmp_path / "a", RESULTS, skip=("cache",))) > 30
    assert tree_differences(tmp_path / "a", tmp_path / "b", RESULTS, skip=("cache",)) == []
    assert json_differences(printed["a"], printed["b"]) == []


def test_the_comparison_reads_each_root_as_root_and_drops_only_timings(tmp_path: Path) -> None:
    got = strip_ignored({"rate": 0.5, "seconds": 3.0, "stage_seconds": 1, "paths": {"x": "/r/x"}, "rows": [{"kl": 1}]}, "/r")
    assert got == {"rate": 0.5, "paths": {"x": "ROOT/x"}, "rows": [{"kl": 1}]}
    for side, rate in (("a", "0.5"), ("b", "0.25")):
        (tmp_path / side).mkdir()
        (tmp_path / side / "r.csv").write_text(f"label,rate,seconds\nx,{rate},{side}\n", encoding="utf-8")
        (tmp_path / side / "r.jsonl").write_text(json.dumps({"path": str(tmp_path / side / "o")}) + "\n", encoding="utf-8")
    assert tree_differences(tmp_path / "a", tmp_path / "b", ("*.csv", "*.jsonl")) == ["r.csv: /0/rate: '0.25' instead of '0.5'"]
