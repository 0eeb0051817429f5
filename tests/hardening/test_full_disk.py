"""A disk that fills up mid-run: one clear error line naming the file, the earlier checkpoint intact, and a rerun
after freeing space that resumes to the uninterrupted run's results.

The full disk is simulated where it usually shows first: ``os.fsync`` of the atomic writer's
temporary file fails with ``ENOSPC`` for one chosen file (every other write goes through).
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from alignscope.cli import app
from tests.hardening.kill_commands import KillCommand, prepare
from tests.hardening.kill_harness import TRACEBACK, compare_results, unreadable_files

runner = CliRunner()
_real_fsync = os.fsync


class FullDisk:
    """``os.fsync`` that fails with ENOSPC on the ``nth`` write of a file called ``name`` (after calling ``before``)."""

    def __init__(self, name: str, nth: int = 1, before: Callable[[Path], None] | None = None) -> None:
        self.name, self.nth, self.before, self.seen = name, nth, before, 0

    def __call__(self, fd: int) -> None:
        tmp = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if tmp.name.startswith(f".{self.name}.") and tmp.name.endswith(".tmp"):
            self.seen += 1
            if self.seen == self.nth:
                if self.before is not None:
                    self.before(tmp.parent / self.name)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        _real_fsync(fd)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread, as the CLI runs in CI (two threads on a busy 2-core machine are many times slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def commands(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KillCommand]:
    return prepare(tmp_path_factory.mktemp("full_disk_inputs"))


def _files(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def _full_disk_line(stderr: str, path: Path) -> None:
    assert TRACEBACK not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {path}: could not write this file: the disk is full (no space left on device); free some space "
                      "and rerun: finished stages and checkpoints are kept"]


def _reference_then_full_disk(cmd: KillCommand, tmp_path: Path, full_disk: Any) -> tuple[Path, Any]:
    """An uninterrupted reference run into ``tmp_path/ref``, then the same command into ``tmp_path/out`` with a full disk."""
    ref = runner.invoke(app, cmd.argv(tmp_path / "ref"))
    assert ref.exit_code == 0, ref.output
    out = tmp_path / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "fsync", full_disk)
        full = runner.invoke(app, cmd.argv(out))
    assert full.exit_code == 2
    return out, full


def test_run_stops_at_the_stage_that_could_not_be_written(commands: dict[str, KillCommand], tmp_path: Path) -> None:
    cmd = commands["run refusal"]
    out, full = _reference_then_full_disk(cmd, tmp_path, FullDisk("select.json"))
    _full_disk_line(full.stderr, out / "stages" / "select.json")
    finished = {k: v for k, v in _files(out / "stages").items() if k.split(".")[0] in ("baseline", "extract", "model_hash")}
    assert {"baseline.json", "extract.json", "extract.safetensors"} <= set(finished)
    assert not (out / "stages" / "select.json").exists()
    assert unreadable_files(out) == [] and not [p for p in out.rglob("*.tmp")]  # no half file, no temporary left
    again = runner.invoke(app, cmd.argv(out))  # space freed
    assert again.exit_code == 0, again.output
    after = _files(out / "stages")
    assert all(after[name] == finished[name] for name in finished)  # the finished stages were reused, byte for byte
    assert compare_results(cmd, tmp_path / "ref", out) == []


def test_mac_train_keeps_the_previous_checkpoint(commands: dict[str, KillCommand], tmp_path: Path) -> None:
    cmd = commands["mac train"]
    kept: dict[str, bytes] = {}

    def remember(target: Path) -> None:  # the checkpoint on disk when the next one fails to write
        kept.update({p.name: p.read_bytes() for p in target.parent.iterdir() if p.is_file() and not p.name.startswith(".")})

    out, full = _reference_then_full_disk(cmd, tmp_path, FullDisk("state.safetensors", nth=2, before=remember))
    [checkpoint] = {p.parent for p in out.rglob("state.safetensors")}
    _full_disk_line(full.stderr, checkpoint / "state.safetensors")
    assert sorted(kept) == ["progress.json", "state.safetensors"] and json.loads(kept["progress.json"])["step"] == 2
    assert {p.name: p.read_bytes() for p in checkpoint.iterdir()} == kept  # unchanged, and no temporary beside it
    again = runner.invoke(app, cmd.argv(out))  # space freed
    assert again.exit_code == 0, again.output
    variant = checkpoint.parent.name  # OUT/train/VARIANT/checkpoint
    assert json.loads((out / "training.json").read_text(encoding="utf-8"))["variants"][variant]["resumed_from_step"] == 2
    assert compare_results(cmd, tmp_path / "ref", out) == []
