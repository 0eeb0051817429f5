"""Ethical-dilemma analysis end to end, with its runtime, on one or more models (one comparison table).

Runs ``alignscope dilemmas`` on the built-in 44 pairs (or ``--pairs FILE`` / ``--moralchoice CSV``)
for each ``--model`` (default: the embedded model), then prints the comparison table and where
the files went. Extra models must be local directories or hub ids already in the HF cache.

Run:  .venv/bin/python benchmarks/dilemmas_models.py [--model default --model ./other] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", default=None)
    parser.add_argument("--moralchoice", default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="dilemmas_")
    cmd = [sys.executable, "-m", "alignscope", "dilemmas", "--out", out, "--threads", str(args.threads), "--json"]
    for m in args.model or ["default"]:
        cmd += ["--model", m]
    for flag, value in (("--pairs", args.pairs), ("--moralchoice", args.moralchoice), ("--limit", args.limit)):
        if value is not None:
            cmd += [flag, str(value)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    cols = ["model", "n_pairs", "chose_ethical_base", "chose_ethical_cf", "consistent", "mean_content", "mean_letter_bias",
            "mean_peak_layer", "mean_n_flip_layers", "mean_gini", "mean_top5", "seconds"]
    print(" | ".join(cols))
    for row in data["comparison"]:
        print(" | ".join(str(row[c]) for c in cols))
    for s in data["models"]:
        print(f"\n{s['model']}: max DLA sum error {s['max_dla_error']:.2e}; peak-layer mean {s['peak_layer']['mean']:.1f} "
              f"[{s['peak_layer']['ci95'][0]:.1f}, {s['peak_layer']['ci95'][1]:.1f}]; "
              f"letter bias {s['letter_bias']['mean']:.3f} vs content {s['content']['mean']:.3f} (logits)")
        print("mean patching profile by layer:", [round(x, 3) for x in s["mean_patch_profile"]])
    print(f"\nwall time {wall:.1f} s (model load included); files under {out}")


if __name__ == "__main__":
    main()
