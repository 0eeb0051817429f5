"""Unexpected internal errors: one line naming the command, stage and exception type, the traceback in a log, stages kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from alignscope.cli import app
from alignscope.pipeline import steering_stages
from tests.pipeline.stubs import stub_select

runner = CliRunner()


def _commands(group: Any, prefix: str = "alignscope") -> list[tuple[str, Any]]:
    out = []
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            out += _commands(cmd, f"{prefix} {name}")
        else:
            out.append((f"{prefix} {name}", cmd))
    return out


def test_every_command_turns_errors_into_one_line() -> None:
    commands = _commands(typer.main.get_command(app))
    assert len(commands) >= 15  # the walk finds the commands (and would find a new one without the decorator)
    missing = [name for name, cmd in commands if not getattr(cmd.callback, "handles_errors", False)]
    assert not missing, f"commands without @handle_errors: {missing}"


def test_a_crash_in_a_stage_is_one_line_with_a_log(tiny_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("shape mismatch deep inside torch\nsecond line of the message")

    monkeypatch.setattr(steering_stages, "select", stub_select)
    monkeypatch.setattr(steering_stages, "intervene", broken)
    out = tmp_path / "run"
    res = runner.invoke(app, ["run", str(tiny_config()), "--out", str(out), "--json"])
    assert res.exit_code == 1
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    error = [line for line in lines if line.startswith("error:")]
    assert len(error) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "internal error in `alignscope run` in stage 'intervene': RuntimeError: shape mismatch deep inside torch" in error[0]
    log = out / "error.log"
    assert str(log) in res.stderr.replace("\n", "")
    text = log.read_text(encoding="utf-8")
    assert "Traceback" in text and "second line of the message" in text and "in broken" in text
    for stage in ("baseline", "extract", "select"):  # finished stages stay on disk, complete
        assert json.loads((out / "stages" / f"{stage}.json").read_text(encoding="utf-8"))["stage"] == stage


def test_verbose_also_prints_the_traceback(tiny_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(steering_stages, "select", broken)
    res = runner.invoke(app, ["--verbose", "run", str(tiny_config()), "--out", str(tmp_path / "run")])
    assert res.exit_code == 1 and "stage 'select': ZeroDivisionError" in res.stderr and "Traceback" in res.stderr
