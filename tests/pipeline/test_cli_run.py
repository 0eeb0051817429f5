from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alignscope.cli import app
from alignscope.pipeline import steering_stages
from tests.pipeline.stubs import stub_intervene, stub_select
from tests.pipeline.test_runner import count_calls

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def stubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(steering_stages, "select", stub_select)
    monkeypatch.setattr(steering_stages, "intervene", stub_intervene)


def test_run_cli_json_summary(tiny_config, tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, ["run", str(tiny_config()), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    for when in ("before", "after"):
        assert set(summary[when]) == {"n", "refusal_rate", "ci95"}
        assert summary[when]["n"] == {"harmful": 3, "harmless": 5}
        assert all(len(ci) == 2 for ci in summary[when]["ci95"].values())
    assert summary["kl"]["n"] == 5 and summary["split"] == "test"
    assert Path(summary["paths"]["report.html"]).is_file() and Path(summary["paths"]["intervention.safetensors"]).is_file()
    assert set(summary["stages"]) == {"baseline", "extract", "select", "intervene", "evaluate", "report"}
    again = runner.invoke(app, ["run", str(tiny_config()), "--out", str(out), "--json"])
    assert all(v["reused"] for k, v in json.loads(again.stdout.strip().splitlines()[-1])["stages"].items() if k != "report")


def test_run_cli_bad_config_names_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("intervene:\n  kind: sorcery\n", encoding="utf-8")
    res = runner.invoke(app, ["run", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "intervene.kind" in res.output and "conditional" in res.output


_CHILD = """
import sys, time
sys.path.insert(0, {root!r})
from alignscope.pipeline import steering_stages
from alignscope.pipeline.config import load_config
from alignscope.pipeline.runner import run_pipeline
from tests.pipeline.stubs import stub_select
def hang(*args, **kwargs):
    while True:
        time.sleep(1)
steering_stages.select = stub_select
steering_stages.intervene = hang
run_pipeline(load_config({config!r}), {out!r}, progress=False)
"""


def test_resume_after_kill_9(tiny_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, out = str(tiny_config()), str(tmp_path / "run")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", _CHILD.format(root=str(ROOT), config=config, out=out)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (Path(out) / "stages" / "select.json").exists():
            assert child.poll() is None and time.monotonic() < deadline, "child died or never reached the intervene stage"
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    calls = count_calls(monkeypatch)
    res = runner.invoke(app, ["run", config, "--out", out, "--json"])
    assert res.exit_code == 0, res.output
    assert calls == {"baseline": 0, "extract": 0, "select": 0, "intervene": 1, "evaluate": 1}
    assert json.loads(res.stdout.strip().splitlines()[-1])["stages"]["select"]["reused"] is True
