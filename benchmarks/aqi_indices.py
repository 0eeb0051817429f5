"""Accuracy of the four cluster indices: max abs (and relative) error against brute-force pure-Python loops and,
for Calinski-Harabasz and Davies-Bouldin, against scikit-learn, on small random data (several sizes and seeds).

Run: .venv/bin/python benchmarks/aqi_indices.py
"""

from __future__ import annotations

import math
import random

import numpy as np
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

from alignscope.geometry.indices import calinski_harabasz, davies_bouldin, dunn, two_cluster_chi_xb, xie_beni


def dist(p, q) -> float:
    return math.sqrt(sum((a - b) ** 2 for a, b in zip(p, q, strict=True)))


def centroid(pts):
    return [sum(c) / len(pts) for c in zip(*pts, strict=True)]


def brute(pts, labels) -> dict[str, float]:
    gs = [[p for p, lab in zip(pts, labels, strict=True) if lab == j] for j in sorted(set(labels))]
    cs, c = [centroid(g) for g in gs], centroid(pts)
    within = sum(dist(p, cj) ** 2 for g, cj in zip(gs, cs, strict=True) for p in g)
    between = sum(len(g) * dist(cj, c) ** 2 for g, cj in zip(gs, cs, strict=True))
    k, n = len(gs), len(pts)
    s = [sum(dist(p, cj) for p in g) / len(g) for g, cj in zip(gs, cs, strict=True)]
    db = sum(max((s[i] + s[j]) / dist(cs[i], cs[j]) for j in range(k) if j != i) for i in range(k)) / k
    sep = min(dist(cs[i], cs[j]) ** 2 for i in range(k) for j in range(k) if i != j)
    inter = min(dist(pts[i], pts[j]) for i in range(n) for j in range(n) if labels[i] != labels[j])
    diam = max(dist(pts[i], pts[j]) for i in range(n) for j in range(n) if labels[i] == labels[j])
    return {"chi": (between / (k - 1)) / (within / (n - k)), "davies_bouldin": db, "xb": within / (n * sep), "dunn": inter / diam}


def main() -> None:
    err = {key: [0.0, 0.0] for key in ("chi", "davies_bouldin", "xb", "dunn", "chi_2c", "xb_2c")}
    sk = {"chi": 0.0, "davies_bouldin": 0.0}
    cases = 0
    for seed in range(20):
        rng = random.Random(seed)
        k, d = 2 + seed % 3, 1 + seed % 9
        sizes = [rng.randint(2, 25) for _ in range(k)]
        pts = [[rng.gauss(1.5 * j, 0.5 + rng.random()) + 10 * (seed % 2) for _ in range(d)] for j, m in enumerate(sizes) for _ in range(m)]
        labels = [j for j, m in enumerate(sizes) for _ in range(m)]
        ref = brute(pts, labels)
        ours = {"chi": calinski_harabasz(pts, labels), "davies_bouldin": davies_bouldin(pts, labels), "xb": xie_beni(pts, labels),
                "dunn": dunn(pts, labels)}
        if k == 2:
            x = np.array(pts)
            chi2, xb2 = two_cluster_chi_xb(x[np.array(labels) == 0], x[np.array(labels) == 1])
            ours |= {"chi_2c": float(chi2[0]), "xb_2c": float(xb2[0])}
            ref |= {"chi_2c": ref["chi"], "xb_2c": ref["xb"]}
        for key, value in ours.items():
            err[key][0] = max(err[key][0], abs(value - ref[key]))
            err[key][1] = max(err[key][1], abs(value - ref[key]) / abs(ref[key]))
        sk["chi"] = max(sk["chi"], abs(ours["chi"] - calinski_harabasz_score(pts, labels)))
        sk["davies_bouldin"] = max(sk["davies_bouldin"], abs(ours["davies_bouldin"] - davies_bouldin_score(pts, labels)))
        cases += 1
    print(f"{cases} random partitions (2-4 clusters of 2-25 points, 1-9 dims)")
    print(f"{'index':<22} {'max abs err vs brute':>21} {'max rel err':>12} {'max abs err vs sklearn':>23} {'<= 1e-6':>8}")
    names = {"chi": "Calinski-Harabasz", "davies_bouldin": "Davies-Bouldin", "xb": "Xie-Beni", "dunn": "Dunn",
             "chi_2c": "CHI (weighted, 2 cl.)", "xb_2c": "XB (weighted, 2 cl.)"}
    for key, (abs_err, rel_err) in err.items():
        skl = f"{sk[key]:.2e}" if key in sk else "-"
        print(f"{names[key]:<22} {abs_err:>21.2e} {rel_err:>12.2e} {skl:>23} {'yes' if rel_err <= 1e-6 else 'NO':>8}")


if __name__ == "__main__":
    main()
