"""Kill a CLI command with SIGKILL at seeded moments, resume it, and compare its results with an uninterrupted run's.

A command runs as a real subprocess (``python -m alignscope ...``, one torch thread, so CPU results
are deterministic). The reference run gives its working window in the process's own CPU seconds
(read from ``/proc``, so a busy machine does not stretch it): from the first file it wrote under
OUT to its exit. Each kill lands at an offset drawn uniformly from that window's length (seeded
RNG), counted from the moment the killed process itself starts writing under OUT: inside real
work, never during ``import torch``, and for a resumed run after the work it reuses. After every
kill, every file the tool could read back on a resume must parse completely (no partial file
under a final name). Kills can be chained (kill, resume, kill again...); the last run goes to
completion and its result files must equal the reference's, bit for bit, apart from the fields
named in :data:`tests.hardening.result_files.IGNORED_FIELDS`. Linux only (``/proc``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import safe_open

from tests.hardening.kill_commands import KillCommand
from tests.hardening.result_files import is_temporary, tree_differences

ROOT = Path(__file__).resolve().parents[2]

TRACEBACK = "Traceback (most recent call last)"


def env_for(cache: Path) -> dict[str, str]:
    """The child environment: one thread, this checkout's sources, a private cache."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "ALIGNSCOPE_CACHE": str(cache),
            "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "TQDM_DISABLE": "1"}


@dataclass(frozen=True)
class Reference:
    """An uninterrupted run: its output directory, the CPU seconds it had used when it first wrote and when it
    exited, and its wall time."""

    out: Path
    first_file: float
    duration: float
    wall: float
    stderr: str


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a live process has used, from ``/proc/PID/stat``; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Kill:
    """One SIGKILL: when it was aimed, whether the process was still working, and what did not parse afterwards."""

    at: float
    mid_work: bool
    partial: list[str]
    stderr: str


@dataclass
class KillReport:
    """Every kill of one output directory and the comparison of its completed run with the reference."""

    command: str
    kills: list[Kill] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    final_rc: int | None = None
    final_stderr: str = ""

    @property
    def tracebacks(self) -> int:
        """Tracebacks printed by any process of this directory (killed or resumed)."""
        return sum(k.stderr.count(TRACEBACK) for k in self.kills) + self.final_stderr.count(TRACEBACK)

    @property
    def equal(self) -> bool:
        """The completed run exited 0 and its results equal the reference's."""
        return self.final_rc == 0 and not self.differences

    @property
    def partial_files(self) -> int:
        """Files under a final name that did not parse after some kill."""
        return sum(len(k.partial) for k in self.kills)


def _spawn(cmd: KillCommand, out: Path, env: Mapping[str, str], stderr_path: Path) -> subprocess.Popen[bytes]:
    stderr_path.parent.mkdir(parents=True, exist_ok=True)
    with stderr_path.open("wb") as err:
        return subprocess.Popen([sys.executable, "-m", "alignscope", *cmd.argv(out)], env=dict(env),
                                stdout=subprocess.DEVNULL, stderr=err)


def _any_file(out: Path) -> bool:
    return out.is_dir() and any(p.is_file() for p in out.rglob("*"))


def _snapshot(out: Path) -> dict[str, int]:
    """Every file under ``out`` (temporaries included) and its modification time."""
    if not out.is_dir():
        return {}
    found = {}
    for p in out.rglob("*"):
        try:
            if p.is_file():
                found[str(p)] = p.stat().st_mtime_ns
        except OSError:  # renamed or removed while we looked
            continue
    return found


def reference(cmd: KillCommand, out: Path, env: Mapping[str, str], timeout: float = 900) -> Reference:
    """Run ``cmd`` to completion into ``out`` and time it; raise if it fails."""
    err = out.parent / f"{out.name}.stderr"
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    proc = _spawn(cmd, out, env, err)
    first, used = None, 0.0
    while proc.poll() is None:
        used = cpu_seconds(proc.pid) or used
        if first is None and _any_file(out):
            first = used
        if time.monotonic() - start > timeout:
            proc.kill()
            raise RuntimeError(f"{cmd.name}: the reference run took over {timeout} s")
        time.sleep(0.01)
    wall = time.monotonic() - start
    stderr = err.read_text(encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd.name}: the reference run failed ({proc.returncode}):\n{stderr[-3000:]}")
    return Reference(out, used if first is None else first, used, wall, stderr)


def kill_once(cmd: KillCommand, out: Path, env: Mapping[str, str], ref: Reference, rng: random.Random,
              check: Iterable[Path] = ()) -> Kill:
    """Start ``cmd`` on ``out``, SIGKILL it at a seeded moment inside the reference's working window, check the files."""
    at = rng.uniform(0.0, ref.duration - ref.first_file)
    err = out.parent / f"{out.name}.killed.stderr"
    before = _snapshot(out)
    proc = _spawn(cmd, out, env, err)
    target = None
    while proc.poll() is None:
        used = cpu_seconds(proc.pid) or 0.0
        if target is None:
            if _snapshot(out) != before:  # this process has begun to write: its real work started
                target = used + at
        elif used >= target:
            break
        time.sleep(0.005 if target is not None else 0.02)
    mid_work = proc.poll() is None
    if mid_work:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    partial = [p for d in (out, *check) for p in unreadable_files(d)]
    return Kill(at, mid_work, [str(p) for p in partial], err.read_text(encoding="utf-8", errors="replace"))


def kill_and_resume(cmd: KillCommand, out: Path, env: Mapping[str, str], ref: Reference, rng: random.Random, n_kills: int,
                    check: Iterable[Path] = (), timeout: float = 900) -> KillReport:
    """Kill ``cmd`` ``n_kills`` times in a row on ``out`` (each run resuming the last), then run it to the end and compare."""
    report = KillReport(cmd.name)
    for _ in range(n_kills):
        report.kills.append(kill_once(cmd, out, env, ref, rng, check))
    err = out.parent / f"{out.name}.final.stderr"
    proc = _spawn(cmd, out, env, err)
    try:
        report.final_rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        report.final_rc = None
    report.final_stderr = err.read_text(encoding="utf-8", errors="replace")
    report.differences = compare_results(cmd, ref.out, out)
    return report


def unreadable_files(root: Path) -> list[Path]:
    """Files under ``root`` with a final name (not a temporary) that a resume could read but that do not parse completely."""
    if not root.is_dir():
        return []
    return [p for p in sorted(root.rglob("*")) if p.is_file() and not is_temporary(p) and not parses(p)]


def parses(path: Path) -> bool:
    """Whether ``path`` parses completely as its suffix says (JSON, JSONL, CSV, safetensors); other files pass."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif suffix == ".jsonl":
            text = path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):
                return False
            for line in text.splitlines():
                json.loads(line)
        elif suffix == ".csv":
            text = path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):
                return False
            rows = list(csv.reader(io.StringIO(text)))
            if rows and any(len(r) != len(rows[0]) for r in rows):
                return False
        elif suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as fh:
                for key in fh.keys():  # noqa: SIM118 (safe_open has no __iter__)
                    fh.get_tensor(key)
    except Exception:
        return False
    return True


def compare_results(cmd: KillCommand, ref_out: Path, out: Path) -> list[str]:
    """Every way the result files of ``out`` differ from ``ref_out``'s (empty: equal, bit for bit; see
    :mod:`tests.hardening.result_files`)."""
    return tree_differences(ref_out, out, cmd.results)
