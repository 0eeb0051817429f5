"""``alignscope bench`` on the embedded model with the demo's intervention: the before/after table and the wall time.

1. In-house sets: ``--suite refusal,truthfulqa,factual,bias,perplexity`` (target: at most 10 minutes on 2 CPU cores).
2. When ../shared/data exists: ``--suite factual,bias`` on the public files (ROME's known_1000.json, every BBQ
   file under bbq/, CrowS-Pairs), each cut to ``--public-limit`` items.

The intervention is ``--intervention FILE``, else the demo's ``demo_out/run/intervention.safetensors``
(``make demo`` writes it), else one built by ``alignscope run`` (the refusal study) in a temporary directory.

Run: .venv/bin/python benchmarks/bench_suite.py [--intervention F] [--threads 2] [--public-limit 200] [--skip-public] [--suites S]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CLI = [sys.executable, "-m", "alignscope"]


def demo_intervention(tmp: Path) -> Path:
    found = ROOT / "demo_out" / "run" / "intervention.safetensors"
    if found.exists():
        return found
    print("no demo_out/run/intervention.safetensors: running the refusal study (alignscope run) to build one", flush=True)
    subprocess.run([*CLI, "run", "--out", str(tmp / "run")], check=True)
    return tmp / "run" / "intervention.safetensors"


def bench(args: list[str]) -> tuple[dict, float]:
    """Run ``alignscope bench ... --json`` (its table and progress on the terminal); the JSON line and the wall seconds."""
    start = time.perf_counter()
    proc = subprocess.run([*CLI, "bench", *args, "--json"], stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1]), time.perf_counter() - start


def table(payload: dict) -> str:
    """A markdown table: one row per metric, each model's value [95% CI] (n), each intervention's delta and p."""
    models = payload["models"]
    head = ["suite", "metric", *[f"`{Path(m).name}`" for m in models], *[f"Δ {Path(m).name} [95% CI], p" for m in models[1:]]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for suite, metrics in payload["suites"].items():
        for metric, per in metrics.items():
            cells = [f"{per[m]['value']:.3f} [{per[m]['ci95'][0]:.3f}, {per[m]['ci95'][1]:.3f}] (n={per[m]['n']})" for m in models]
            for m in models[1:]:
                d = payload["deltas"][m][suite][metric]
                cells.append(f"{d['diff']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}], p={d['p']:.3g}")
            lines.append("| " + " | ".join([suite, metric, *cells]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervention", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--public-limit", type=int, default=200)
    parser.add_argument("--skip-public", action="store_true")
    parser.add_argument("--suites", default="refusal,truthfulqa,factual,bias,perplexity", help="the in-house run's suites")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        iv = args.intervention or demo_intervention(tmp)
        common = ["--model", "default", "--intervention", str(iv), "--threads", str(args.threads), "--device", "cpu"]
        payload, seconds = bench([*common, "--suite", args.suites, "--out", str(tmp / "inhouse")])
        print(f"\n## in-house sets ({args.suites})\n")
        print(table(payload))
        for suite, note in payload["notes"].items():
            print(f"\n{suite}: {note}")
        print(f"\nwall time: {seconds:.1f} s (target <= 600 s on 2 CPU cores)")
        if args.skip_public or not SHARED.exists():
            print("\npublic files: skipped" + ("" if args.skip_public else f" ({SHARED} not found)"))
            return
        bbq = sorted((SHARED / "bbq").glob("*.jsonl"))
        public = [*common, "--suite", "factual,bias", "--known", str(SHARED / "rome_knowns" / "known_1000.json"),
                  "--crows", str(SHARED / "crows_pairs" / "crows_pairs_anonymized.csv"), *[x for f in bbq for x in ("--bbq", str(f))],
                  "--limit", str(args.public_limit), "--out", str(tmp / "public")]
        payload, seconds = bench(public)
        print(f"\n## public files (ROME known_1000, BBQ x{len(bbq)} files, CrowS-Pairs; first {args.public_limit} items of each)\n")
        print(table(payload))
        print(f"\nwall time: {seconds:.1f} s")


if __name__ == "__main__":
    main()
