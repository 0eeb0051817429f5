"""The four cluster indices against brute-force pure-Python loops (and sklearn where it has them), to 1e-6."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

from alignscope.errors import InputError
from alignscope.geometry.indices import calinski_harabasz, cluster_indices, davies_bouldin, dunn, two_cluster_chi_xb, xie_beni


def data(seed: int, n: int = 13, m: int = 9, d: int = 4, k: int = 2) -> tuple[list[list[float]], list[int]]:
    rng = random.Random(seed)
    sizes = [n, m, 7][:k]
    pts, labels = [], []
    for j, size in enumerate(sizes):
        for _ in range(size):
            pts.append([rng.gauss(2.0 * j, 1.0 + 0.3 * j) for _ in range(d)])
            labels.append(j)
    return pts, labels


def dist(p: list[float], q: list[float]) -> float:
    return math.sqrt(sum((a - b) ** 2 for a, b in zip(p, q, strict=True)))


def centroid(pts: list[list[float]]) -> list[float]:
    return [sum(c) / len(pts) for c in zip(*pts, strict=True)]


def groups(pts, labels):
    return [[p for p, lab in zip(pts, labels, strict=True) if lab == j] for j in sorted(set(labels))]


def brute_chi(pts, labels) -> float:
    gs, c = groups(pts, labels), centroid(pts)
    between = sum(len(g) * dist(centroid(g), c) ** 2 for g in gs)
    within = sum(dist(p, centroid(g)) ** 2 for g in gs for p in g)
    return (between / (len(gs) - 1)) / (within / (len(pts) - len(gs)))


def brute_db(pts, labels) -> float:
    gs = groups(pts, labels)
    cs = [centroid(g) for g in gs]
    s = [sum(dist(p, c) for p in g) / len(g) for g, c in zip(gs, cs, strict=True)]
    return sum(max((s[i] + s[j]) / dist(cs[i], cs[j]) for j in range(len(gs)) if j != i) for i in range(len(gs))) / len(gs)


def brute_xb(pts, labels) -> float:
    gs = groups(pts, labels)
    cs = [centroid(g) for g in gs]
    within = sum(dist(p, c) ** 2 for g, c in zip(gs, cs, strict=True) for p in g)
    sep = min(dist(cs[i], cs[j]) ** 2 for i in range(len(cs)) for j in range(len(cs)) if i != j)
    return within / (len(pts) * sep)


def brute_dunn(pts, labels) -> float:
    n = len(pts)
    inter = min(dist(pts[i], pts[j]) for i in range(n) for j in range(n) if labels[i] != labels[j])
    diam = max(dist(pts[i], pts[j]) for i in range(n) for j in range(n) if labels[i] == labels[j])
    return inter / diam


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [2, 3])
def test_indices_equal_brute_force_and_sklearn(seed: int, k: int) -> None:
    pts, labels = data(seed, k=k)
    assert calinski_harabasz(pts, labels) == pytest.approx(brute_chi(pts, labels), rel=1e-6)
    assert davies_bouldin(pts, labels) == pytest.approx(brute_db(pts, labels), rel=1e-6)
    assert xie_beni(pts, labels) == pytest.approx(brute_xb(pts, labels), rel=1e-6)
    assert dunn(pts, labels) == pytest.approx(brute_dunn(pts, labels), rel=1e-6)
    assert calinski_harabasz(pts, labels) == pytest.approx(calinski_harabasz_score(pts, labels), rel=1e-9)
    assert davies_bouldin(pts, labels) == pytest.approx(davies_bouldin_score(pts, labels), rel=1e-9)
    both = cluster_indices(pts, labels)
    assert (both.chi, both.xb) == (calinski_harabasz(pts, labels), xie_beni(pts, labels))


@pytest.mark.parametrize("seed", range(3))
def test_two_cluster_weighted_sums_equal_the_resampled_point_sets(seed: int) -> None:
    pts, labels = data(seed, d=6)
    a = np.array([p for p, lab in zip(pts, labels, strict=True) if lab == 0]) + 300.0  # far from 0: centring must keep precision
    b = np.array([p for p, lab in zip(pts, labels, strict=True) if lab == 1]) + 300.0
    chi, xb = two_cluster_chi_xb(a, b)
    allp = np.concatenate([a, b]).tolist()
    labs = [0] * len(a) + [1] * len(b)
    assert chi[0] == pytest.approx(brute_chi(allp, labs), rel=1e-6) and xb[0] == pytest.approx(brute_xb(allp, labs), rel=1e-6)
    rng = random.Random(seed)
    ia = [rng.randrange(len(a)) for _ in a]
    ib = [rng.randrange(len(b)) for _ in b]
    wa = np.bincount(ia, minlength=len(a))[None].astype(float)
    wb = np.bincount(ib, minlength=len(b))[None].astype(float)
    rchi, rxb = two_cluster_chi_xb(a, b, wa, wb)
    resampled = [a[i].tolist() for i in ia] + [b[i].tolist() for i in ib]
    assert rchi[0] == pytest.approx(brute_chi(resampled, labs), rel=1e-6)
    assert rxb[0] == pytest.approx(brute_xb(resampled, labs), rel=1e-6)


def test_too_small_clusters_are_input_errors() -> None:
    with pytest.raises(InputError, match="at least 2 points"):
        xie_beni([[0.0], [1.0], [2.0]], [0, 0, 1])
    with pytest.raises(InputError, match="points"):
        dunn([0.0, 1.0], [0, 1])
