"""`alignscope compare` on examples/registry_local.yaml with the local and the Ray executor: equal results, and wall times.

Each executor runs `compare --fresh --json` in its own process and output directory (so neither
reuses the other's hidden-state cache); the wall time includes start-up (and, for Ray, starting a
local cluster). The results must agree: the same models, metrics and per-layer values to 1e-5.

Run: .venv/bin/python benchmarks/compare_executors.py [--limit 16] [--registry examples/registry_local.yaml]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run(registry: Path, out: Path, executor: str, limit: int) -> tuple[dict[str, Any], float]:
    cmd = [sys.executable, "-m", "alignscope", "compare", str(registry), "--out", str(out), "--executor", executor,
           "--fresh", "--limit", str(limit), "--json"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{executor} sweep failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), seconds


TIMING_KEYS = {"seconds"}
"""Wall-clock fields: how long a unit took, not what it measured, so they are left out of the comparison."""


def max_difference(a: Any, b: Any, path: str = "") -> float:
    """The largest absolute difference between two JSON values of the same shape (inf when the shapes differ)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            print(f"keys differ at {path or '<root>'}: {sorted(a)} vs {sorted(b)}")
            return float("inf")
        return max((max_difference(a[k], b[k], f"{path}.{k}") for k in a if k not in TIMING_KEYS), default=0.0)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return float("inf")
        return max((max_difference(x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b, strict=True))), default=0.0)
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return 0.0 if a == b else float("inf")
    if abs(float(a) - float(b)) > 1e-5:
        print(f"differs at {path}: {a} vs {b}")
    return abs(float(a) - float(b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, default=ROOT / "examples" / "registry_local.yaml")
    parser.add_argument("--limit", type=int, default=16, help="texts per group")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        local, t_local = run(args.registry, Path(tmp) / "local", "local", args.limit)
        remote, t_ray = run(args.registry, Path(tmp) / "ray", "ray", args.limit)
    diff = max_difference(local["results"], remote["results"])
    print(f"registry {args.registry.name}: models {', '.join(local['models'])}; metrics {', '.join(local['metrics'])}; "
          f"{args.limit} texts per group")
    print(f"{'executor':<8} {'wall s':>8} {'sweep s':>8}")
    print(f"{'local':<8} {t_local:>8.1f} {local['seconds']:>8.1f}")
    print(f"{'ray':<8} {t_ray:>8.1f} {remote['seconds']:>8.1f}")
    print(f"max |local - ray| over every result value: {diff:.3g} -> {'EQUAL (<= 1e-5)' if diff <= 1e-5 else 'DIFFERENT'}")
    if diff > 1e-5:
        sys.exit(1)


if __name__ == "__main__":
    main()
