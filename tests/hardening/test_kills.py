"""SIGKILL every resumable command at seeded moments, resume it, and get an uninterrupted run's results, bit for bit.

For each command of :mod:`tests.hardening.kill_commands` (``run`` of both studies, ``mac train``,
``tuned-lens train``, ``compare`` and ``capture``) a reference run goes to completion; then the
same command is killed :func:`kills_per_command` times in a chain on another output directory
(each run resuming the last), after every kill no file under a final name is partial, and the
run that finally completes has the reference's result files. The harness's own checks are shown
to fail on a corrupted result.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import settings
from safetensors.torch import save_file

from tests.hardening.kill_commands import COMMANDS, KillCommand, prepare
from tests.hardening.kill_harness import TRACEBACK, compare_results, env_for, kill_and_resume, reference, unreadable_files
from tests.hardening.result_files import is_ignored

KILLS_ENV = "ALIGNSCOPE_KILLS"


def kills_per_command() -> int:
    """How many kills each command takes: ``$ALIGNSCOPE_KILLS``, else 10 under ``--hypothesis-profile=long``, else 1."""
    raw = os.environ.get(KILLS_ENV)
    if raw is not None:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"{KILLS_ENV} must be a whole number >= 1, got {raw!r}")
        return int(raw)
    return 10 if settings._current_profile == "long" else 1


@pytest.fixture(scope="module")
def commands(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, KillCommand]]:
    root = tmp_path_factory.mktemp("kills")
    return root, prepare(root / "inputs")


@pytest.mark.parametrize("name", COMMANDS)
def test_killed_run_resumes_to_the_reference(name: str, commands: tuple[Path, dict[str, KillCommand]]) -> None:
    root, cmds = commands
    cmd, slug = cmds[name], name.replace(" ", "_")
    env = env_for(root / "cache")
    ref = reference(cmd, root / slug / "reference", env)
    assert TRACEBACK not in ref.stderr
    report = kill_and_resume(cmd, root / slug / "killed", env, ref, random.Random(name), kills_per_command(), check=[root / "cache"])
    assert report.kills[0].mid_work, "the first kill came after the run had finished: it tested nothing"
    assert [k.partial for k in report.kills] == [[] for _ in report.kills]  # no partial file under a final name, ever
    assert report.tracebacks == 0, report.final_stderr[-3000:]
    assert report.final_rc == 0, report.final_stderr[-3000:]
    assert report.differences == []
    # the comparison can fail: one result file changed by one bit (or one byte) is found
    first = sorted(p for pattern in cmd.results for p in report_dir(root, slug).glob(pattern) if p.is_file())[0]
    corrupt(first)
    assert any(d.startswith(str(first.relative_to(report_dir(root, slug)))) for d in compare_results(cmd, ref.out, report_dir(root, slug)))


def report_dir(root: Path, slug: str) -> Path:
    return root / slug / "killed"


def corrupt(path: Path) -> None:
    """Change ``path`` as little as possible: one float by one ulp (JSON), one data byte (safetensors), one character."""
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if _nudge_first_float(data):
            path.write_text(json.dumps(data), encoding="utf-8")
            return
        data["_corrupted"] = True
        path.write_text(json.dumps(data), encoding="utf-8")
    elif path.suffix == ".safetensors":
        raw = bytearray(path.read_bytes())
        raw[-1] ^= 0x01
        path.write_bytes(bytes(raw))
    else:
        path.write_text(path.read_text(encoding="utf-8") + "x", encoding="utf-8")


def _nudge_first_float(obj: object) -> bool:
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for key, value in items:
        if isinstance(key, str) and is_ignored(key):
            continue
        if isinstance(value, float) and value == value:
            bits = struct.unpack("<q", struct.pack("<d", value))[0]
            obj[key] = struct.unpack("<d", struct.pack("<q", bits + 1))[0]  # type: ignore[index]
            return True
        if _nudge_first_float(value):
            return True
    return False


def test_kill_count_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KILLS_ENV, "10")
    assert kills_per_command() == 10
    monkeypatch.setenv(KILLS_ENV, "ten")
    with pytest.raises(ValueError, match=KILLS_ENV):
        kills_per_command()
    monkeypatch.delenv(KILLS_ENV)
    assert kills_per_command() == (10 if settings._current_profile == "long" else 1)


def test_partial_files_are_found(tmp_path: Path) -> None:
    """What the after-kill check reports: files cut short under a final name; temporaries and whole files pass."""
    save_file({"w": torch.arange(6.0)}, str(tmp_path / "whole.safetensors"))
    raw = (tmp_path / "whole.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[:-3])
    (tmp_path / "ok.json").write_text('{"a": [1, 2]}', encoding="utf-8")
    (tmp_path / "cut.json").write_text('{"a": [1, ', encoding="utf-8")
    (tmp_path / "cut.jsonl").write_text('{"a": 1}\n{"a"', encoding="utf-8")
    (tmp_path / "rows.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    (tmp_path / "cut.csv").write_text("a,b\n1,2\n3", encoding="utf-8")
    (tmp_path / ".cut.json.x1y2.tmp").write_text('{"a', encoding="utf-8")  # the atomic writer's temporary: never read
    (tmp_path / "plot.png").write_bytes(b"\x89PNG")
    assert sorted(p.name for p in unreadable_files(tmp_path)) == ["cut.csv", "cut.json", "cut.jsonl", "cut.safetensors"]


def test_comparison_ignores_only_the_named_fields(tmp_path: Path) -> None:
    cmd = KillCommand("x", (), ("result.json",))
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "result.json").write_text(json.dumps({"v": 0.1, "nan": float("nan"), "seconds": 1.5, "train": {"tokens": 3}}), encoding="utf-8")
    (b / "result.json").write_text(json.dumps({"v": 0.1, "nan": float("nan"), "seconds": 9.0, "train": {"tokens": 8}}), encoding="utf-8")
    assert compare_results(cmd, a, b) == []  # timings and this-process counts differ; NaN equals NaN
    (tmp_path / "c").mkdir()
    for where, tokens in ((a, 3), (tmp_path / "c", 8)):
        (where / "tokens.json").write_text(json.dumps({"tokens": tokens}), encoding="utf-8")
    assert compare_results(KillCommand("x", (), ("tokens.json",)), a, tmp_path / "c") == ["tokens.json: /tokens: 8 instead of 3"]
    shutil.copy(a / "result.json", b / "result.json")
    corrupt(b / "result.json")
    assert compare_results(cmd, a, b) == ["result.json: /v: 0.10000000000000002 instead of 0.1"]
    (b / "result.json").unlink()
    assert compare_results(cmd, a, b) == ["result.json: files [] instead of ['result.json']"]
