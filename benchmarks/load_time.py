"""Cold and warm load time of the embedded model (SmolLM2-135M-Instruct).

Cold: an empty cache directory, so the GGUF is dequantised and cached as safetensors.
Warm: the cached safetensors load plus the TransformerBridge wrap. Each load runs in a fresh
process; ``load_seconds`` excludes Python imports (reported separately).

Run: .venv/bin/python benchmarks/load_time.py [--warm-repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

SNIPPET = """
import json, time
t0 = time.perf_counter()
from alignscope.models import load_model
t1 = time.perf_counter()
lm = load_model("default", device="cpu")
print(json.dumps({"import_seconds": t1 - t0, "load_seconds": lm.load_seconds}))
"""


def run_once(cache: str) -> dict[str, float]:
    env = {**os.environ, "ALIGNSCOPE_CACHE": cache}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", SNIPPET], env=env, capture_output=True, text=True, check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    data["process_seconds"] = time.perf_counter() - start
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warm-repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        cold = run_once(cache)
        warm = [run_once(cache) for _ in range(args.warm_repeats)]
    warm_load = [w["load_seconds"] for w in warm]
    print(f"cold load (GGUF dequantise + cache + bridge): {cold['load_seconds']:.2f} s")
    print(f"warm load (safetensors + bridge), median of {len(warm)}: {statistics.median(warm_load):.3f} s "
          f"(min {min(warm_load):.3f}, max {max(warm_load):.3f})")
    print(f"python imports (torch, transformers, transformer_lens), median: {statistics.median(w['import_seconds'] for w in warm):.2f} s")
    print(json.dumps({"cold_load_seconds": cold["load_seconds"], "warm_load_seconds_median": statistics.median(warm_load),
                      "warm_load_seconds": warm_load}))


if __name__ == "__main__":
    main()
