"""Shared timing for the generation-throughput benchmarks: interleaved rounds and a ratio table.

Every variant runs once as a warm-up, then all variants run in turn for ``rounds`` rounds, so
machine load on a shared host hits them alike; each variant's median wall time is reported.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping


def interleaved_medians(runs: Mapping[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median wall seconds per variant over ``rounds`` interleaved rounds (after one warm-up each)."""
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def print_ratio_table(medians: Mapping[str, float], baseline: str, n_tokens: int, label: str = "variant") -> None:
    """Seconds, tokens/s and the ratio to ``baseline`` (higher is faster; 1.0 = baseline speed) per variant."""
    width = max(len(label), *(len(name) for name in medians)) + 2
    ratio = f"ratio to {baseline}"
    print(f"{label:<{width}} {'seconds':>8} {'tokens/s':>9} {ratio:>{len(ratio) + 2}}")
    for name, med in medians.items():
        print(f"{name:<{width}} {med:>8.3f} {n_tokens / med:>9.1f} {medians[baseline] / med:>{len(ratio) + 2}.3f}")
