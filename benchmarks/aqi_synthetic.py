"""AQI on two Gaussian clusters as their separation grows: the table and whether it rises monotonically.

Two clusters of 100 points in 32 dimensions (unit variance); the second is shifted by ``s`` along one axis.
Prints the raw indices, the absolute AQI with its bootstrap interval, and the relative AQI across the rows
(comparable within this run only).

Run: .venv/bin/python benchmarks/aqi_synthetic.py
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from alignscope.geometry.aqi import bootstrap_aqi
from alignscope.geometry.indices import cluster_indices
from alignscope.geometry.normalise import absolute_aqi, relative_aqi

SEPARATIONS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)


def main() -> None:
    rng = np.random.default_rng(0)
    a, noise = rng.normal(size=(100, 32)), rng.normal(size=(100, 32))
    rows = []
    for s in SEPARATIONS:
        b = noise + s * np.eye(32)[0]
        x = np.concatenate([a, b])
        labels = np.repeat([0, 1], 100)
        idx = cluster_indices(x, labels)
        rows.append((s, idx, absolute_aqi(idx.chi, idx.xb, len(x)), bootstrap_aqi(a, b, n_boot=1000, seed=0)))
    rel = relative_aqi([r[1].chi for r in rows], [r[1].xb for r in rows])
    print(f"{'sep':>5} {'CHI':>9} {'XB':>9} {'DB':>7} {'Dunn':>7} {'AQI':>7} {'95% CI':>15} {'AQI rel.':>9}")
    for (s, idx, aqi, ci), r in zip(rows, rel, strict=True):
        print(f"{s:>5.2f} {idx.chi:>9.2f} {idx.xb:>9.3f} {idx.davies_bouldin:>7.3f} {idx.dunn:>7.4f} {aqi:>7.2f} "
              f"{ci[0]:>7.2f}-{ci[1]:<7.2f} {r:>9.2f}")
    aqis = [r[2] for r in rows]
    print(f"absolute AQI monotonic in the separation: {all(x < y for x, y in pairwise(aqis))}")
    print(f"relative AQI monotonic in the separation: {all(x < y for x, y in pairwise(rel))}")


if __name__ == "__main__":
    main()
