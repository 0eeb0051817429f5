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
named in :data:`IGNORED_FIELDS`. Linux only (``/proc``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from tests.hardening.kill_commands import KillCommand

ROOT = Path(__file__).resolve().parents[2]

IGNORED_FIELDS: Mapping[str, str] = {
    # wall-clock timings: how long a process took, never what it computed
    "seconds": "wall-clock duration of a run, stage or unit",
    "train_seconds": "wall-clock training time (summed over the processes of a resumed run)",
    "tokens_per_second": "throughput: tokens over wall-clock seconds",
    "search_seconds": "wall-clock duration of a search",
    "throughput_ratio": "generation speed relative to the base model, from wall-clock times",
    # the run's history, not its result: a resumed run reuses what an interrupted one finished
    "reused": "which stages or units this process reused rather than computed",
    "computed": "which units this process computed (the complement of `reused`)",
    "resumed_from_step": "the training step this process started from",
    "resumed_from": "the training step this process started from",
    "train/tokens": "tokens this process trained on (the CLI prints it as `tokens this run`)",
    # paths: where this run's output directory is, which differs between the reference and the killed run
    "lens": "the path of the tuned lens written under OUT",
    # hashes chained on timings: a stage's fingerprint hashes its upstream stages' outputs, and the select and intervene
    # outputs hold their wall-clock `search_seconds`, so the downstream fingerprints differ between any two runs
    "/fingerprint": "(top level of a file) a run stage's input hash, which chains on upstream wall-clock search_seconds",
}
"""JSON keys left out of the comparison, and why each is not part of the result: ``KEY`` anywhere in a result file
(in a safetensors header's JSON metadata too), ``PARENT/KEY`` only inside an object under ``PARENT`` (``/KEY``: at the top level)."""

TRACEBACK = "Traceback (most recent call last)"
TEMP_SUFFIX = ".tmp"


def is_temporary(path: Path) -> bool:
    """A file the atomic writer has not renamed yet (``.NAME.xxxx.tmp``): never read as a result."""
    return path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX)


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


def strip_ignored(obj: Any, parent: str = "") -> Any:
    """``obj`` without the keys of :data:`IGNORED_FIELDS`, at any depth."""
    if isinstance(obj, dict):
        return {k: strip_ignored(v, k) for k, v in obj.items() if k not in IGNORED_FIELDS and f"{parent}/{k}" not in IGNORED_FIELDS}
    if isinstance(obj, list):
        return [strip_ignored(v, parent) for v in obj]
    return obj


def compare_results(cmd: KillCommand, ref_out: Path, out: Path) -> list[str]:
    """Every way the result files of ``out`` differ from ``ref_out``'s (empty: equal, bit for bit)."""
    diffs: list[str] = []
    for pattern in cmd.results:
        want = sorted(p.relative_to(ref_out) for p in ref_out.glob(pattern) if p.is_file() and not is_temporary(p))
        got = sorted(p.relative_to(out) for p in out.glob(pattern) if p.is_file() and not is_temporary(p))
        if not want:
            diffs.append(f"{pattern}: the reference has no such file")
        if want != got:
            diffs.append(f"{pattern}: files {[str(p) for p in got]} instead of {[str(p) for p in want]}")
        for rel in set(want) & set(got):
            diffs += [f"{rel}: {d}" for d in _file_differences(ref_out / rel, out / rel)]
    return diffs


def _file_differences(a: Path, b: Path) -> list[str]:
    if a.suffix == ".json":
        return _json_differences(strip_ignored(json.loads(a.read_text(encoding="utf-8"))),
                                 strip_ignored(json.loads(b.read_text(encoding="utf-8"))), "")
    if a.suffix == ".safetensors":
        return _tensor_differences(a, b)
    return [] if a.read_bytes() == b.read_bytes() else ["bytes differ"]


def _json_differences(a: Any, b: Any, where: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where or '/'}: keys {sorted(b)} instead of {sorted(a)}"]
        return [d for k in a for d in _json_differences(a[k], b[k], f"{where}/{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where or '/'}: {len(b)} items instead of {len(a)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _json_differences(x, y, f"{where}/{i}")]
    if isinstance(a, float) and isinstance(b, float):  # bit for bit (NaN equals NaN; 0.0 is not -0.0)
        return [] if struct.pack("<d", a) == struct.pack("<d", b) else [f"{where or '/'}: {b!r} instead of {a!r}"]
    if type(a) is not type(b) or a != b:
        return [f"{where or '/'}: {b!r} instead of {a!r}"]
    return []


def _tensor_differences(a: Path, b: Path) -> list[str]:
    with safe_open(str(a), framework="pt") as fa, safe_open(str(b), framework="pt") as fb:
        if _metadata(fa.metadata()) != _metadata(fb.metadata()):
            return [f"metadata {fb.metadata()} instead of {fa.metadata()}"]
        if set(fa.keys()) != set(fb.keys()):
            return [f"tensors {sorted(fb.keys())} instead of {sorted(fa.keys())}"]
        diffs = []
        for key in fa.keys():  # noqa: SIM118
            x, y = fa.get_tensor(key), fb.get_tensor(key)
            if x.dtype != y.dtype or x.shape != y.shape or _raw(x) != _raw(y):
                diffs.append(f"tensor {key} differs")
        return diffs


def _metadata(meta: Mapping[str, str] | None) -> dict[str, Any]:
    """Header metadata with JSON-object values parsed and stripped of :data:`IGNORED_FIELDS`."""
    parsed: dict[str, Any] = {}
    for key, value in (meta or {}).items():
        try:
            parsed[key] = strip_ignored(json.loads(value)) if value.startswith("{") else value
        except ValueError:
            parsed[key] = value
    return parsed


def _raw(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
