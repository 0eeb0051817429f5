"""Before/after speed of a change: run benchmarks at a base revision and at the working tree, side by side.

For each benchmark the runs go in the order base, head, head, base (so a drift in background
load hits both sides alike), in one sitting, with the same ``.venv``. The base side runs its own
copy of the script against its own ``src/`` (a temporary ``git worktree``, put first on
``PYTHONPATH``); the head side runs this checkout. Each run's figures are read from its output,
and the mean of each side is printed with the ratio head/base (for times, >1 is slower; for
throughputs, <1 is slower).

Benchmarks and the figures read:
* ``patching_speed``: ``alignscope_wall_s`` (seconds, lower is better) and ``speedup_wall`` vs TransformerLens;
* ``capture_throughput``: capture ``prompts_per_s`` and its ratio to a plain HF forward;
* ``steering_generate_throughput``: tokens/s and the ratio to plain HF for every condition;
* ``tuned_lens_vs_library``: our loop's tokens/s and the speed-up over the library.

Run: .venv/bin/python benchmarks/compare_revisions.py --base REV [--bench NAME ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
Figures = dict[str, float]


def _last_json(text: str) -> dict:
    lines = [line for line in text.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def patching(text: str) -> Figures:
    d = _last_json(text)
    return {"alignscope wall s (lower is better)": d["alignscope_wall_s"], "speed-up vs TransformerLens": d["speedup_wall"]}


def capture(text: str) -> Figures:
    d = _last_json(text)
    return {"capture prompts/s": d["capture"]["prompts_per_s"], "capture / plain HF forward": d["ratio"]}


_ROW = re.compile(r"^(\S.*?)\s{2,}([\d.]+)\s+([\d.]+)\s+([\d.]+)$")


def generate(text: str) -> Figures:
    out: Figures = {}
    for line in text.splitlines():
        m = _ROW.match(line.rstrip())
        if m and not line.startswith("condition"):
            out[f"{m.group(1)} tokens/s"] = float(m.group(3))
            out[f"{m.group(1)} / plain HF"] = float(m.group(4))
    return out


def tuned_lens(text: str) -> Figures:
    ours = re.search(r"^alignscope \(mean of 2\)\s+([\d.]+)", text, re.M)
    speed = re.search(r"^speed-up: ([\d.]+)x", text, re.M)
    if not ours or not speed:
        return {}
    return {"alignscope tokens/s": float(ours.group(1)), "speed-up vs tuned-lens": float(speed.group(1))}


BENCHES: dict[str, Callable[[str], Figures]] = {
    "patching_speed": patching, "capture_throughput": capture,
    "steering_generate_throughput": generate, "tuned_lens_vs_library": tuned_lens,
}


def run(script: Path, src: Path | None, log: Path) -> str:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = f"{src}{os.pathsep}{env['PYTHONPATH']}" if env.get("PYTHONPATH") else str(src)
    result = subprocess.run([sys.executable, str(script)], env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    log.write_text(result.stdout + "\n--- stderr ---\n" + result.stderr[-20000:], encoding="utf-8")
    if result.returncode != 0:
        raise SystemExit(f"{script} failed (exit {result.returncode}); see {log}")
    return result.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="git revision to compare against")
    ap.add_argument("--bench", nargs="+", default=list(BENCHES), choices=list(BENCHES))
    ap.add_argument("--out", default=None, help="keep every run's output here (default: a temporary directory)")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="compare_revisions_"))
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="base_") as tmp:
        base = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), args.base], cwd=ROOT, check=True)
        try:
            results = {name: _compare(name, base, out) for name in args.bench}
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)
    print(json.dumps({"base": args.base, "results": results}))
    return 0


def _compare(name: str, base: Path, out: Path) -> dict[str, dict[str, float]]:
    parse = BENCHES[name]
    sides: dict[str, list[Figures]] = {"base": [], "head": []}
    for i, side in enumerate(("base", "head", "head", "base")):
        script = (base if side == "base" else ROOT) / "benchmarks" / f"{name}.py"
        text = run(script, base / "src" if side == "base" else None, out / f"{name}.{side}.{i}.log")
        sides[side].append(parse(text))
        print(f"{name}: {side} run done", file=sys.stderr, flush=True)
    print(f"\n{name} (mean of 2 runs per side, order base/head/head/base)")
    print(f"{'figure':52s} {'base':>10s} {'head':>10s} {'head/base':>10s}")
    table: dict[str, dict[str, float]] = {}
    for key in sides["head"][0]:
        b = statistics.mean(f[key] for f in sides["base"] if key in f)
        h = statistics.mean(f[key] for f in sides["head"])
        table[key] = {"base": b, "head": h, "ratio": h / b}
        print(f"{key:52s} {b:10.3f} {h:10.3f} {h / b:10.3f}")
    return table


if __name__ == "__main__":
    raise SystemExit(main())
