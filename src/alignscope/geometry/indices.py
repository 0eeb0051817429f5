"""Cluster-validity indices of a crisp two-cluster partition: Calinski-Harabasz, Davies-Bouldin, Xie-Beni and Dunn.

Calinski-Harabasz and Davies-Bouldin come from scikit-learn (``sklearn.metrics``); Xie-Beni and Dunn
are written here against their definitions (below). :func:`two_cluster_chi_xb` computes CHI and XB of
many resamples at once from weighted sums (the bootstrap uses it); it equals the direct formulas.

Definitions, for points ``x_i`` with labels ``l_i`` in ``k`` clusters, centroids ``c_j`` and ``n`` points:

* CHI = ``(B / (k - 1)) / (W / (n - k))`` with ``B = sum_j n_j |c_j - c|^2`` (``c`` the overall mean)
  and ``W = sum_i |x_i - c_{l_i}|^2``. Higher separates better.
* DB = mean over clusters ``j`` of ``max_{m != j} (s_j + s_m) / |c_j - c_m|``, ``s_j`` the mean distance
  of cluster ``j``'s points to ``c_j``. Lower separates better.
* XB (crisp) = ``W / (n * min_{j != m} |c_j - c_m|^2)``. Lower separates better.
* Dunn = ``min`` distance between two points of different clusters ``/ max`` cluster diameter (the largest
  distance between two points of one cluster). Higher separates better.

Example:
    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0], [5.0], [6.0]]); y = np.array([0, 0, 1, 1])
    >>> round(xie_beni(x, y), 4), round(dunn(x, y), 4)
    (0.01, 4.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

from alignscope.errors import InputError


@dataclass(frozen=True)
class ClusterIndices:
    """The four raw indices of one partition."""

    chi: float
    xb: float
    davies_bouldin: float
    dunn: float


def _check(x: ArrayLike, labels: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    arr = np.asarray(x, dtype=np.float64)
    lab = np.asarray(labels)
    if arr.ndim != 2 or lab.ndim != 1 or arr.shape[0] != lab.shape[0]:
        raise InputError(f"expected points (n, d) and labels (n,), got {arr.shape} and {lab.shape}", field="points")
    _, codes = np.unique(lab, return_inverse=True)
    counts = np.bincount(codes)
    if counts.size < 2 or counts.min() < 2:
        raise InputError(f"need at least 2 clusters of at least 2 points each, got sizes {counts.tolist()}", field="labels")
    return arr, codes.astype(np.int64)


def _centroids(x: NDArray[np.float64], codes: NDArray[np.int64]) -> NDArray[np.float64]:
    return np.stack([x[codes == j].mean(0) for j in range(int(codes.max()) + 1)])


def calinski_harabasz(x: ArrayLike, labels: ArrayLike) -> float:
    """Calinski-Harabasz index (``sklearn.metrics.calinski_harabasz_score``)."""
    arr, codes = _check(x, labels)
    return float(calinski_harabasz_score(arr, codes))


def davies_bouldin(x: ArrayLike, labels: ArrayLike) -> float:
    """Davies-Bouldin index (``sklearn.metrics.davies_bouldin_score``)."""
    arr, codes = _check(x, labels)
    return float(davies_bouldin_score(arr, codes))


def xie_beni(x: ArrayLike, labels: ArrayLike) -> float:
    """Crisp Xie-Beni index: ``sum_i |x_i - c_{l_i}|^2 / (n * min_{j != m} |c_j - c_m|^2)`` (inf when two centroids coincide)."""
    arr, codes = _check(x, labels)
    cents = _centroids(arr, codes)
    within = float(((arr - cents[codes]) ** 2).sum())
    d2 = ((cents[:, None, :] - cents[None, :, :]) ** 2).sum(-1)
    sep = float(d2[~np.eye(len(cents), dtype=bool)].min())
    return within / (arr.shape[0] * sep) if sep > 0 else float("inf")


def dunn(x: ArrayLike, labels: ArrayLike) -> float:
    """Dunn index: min distance between points of different clusters / max intra-cluster diameter (inf when every diameter is 0)."""
    arr, codes = _check(x, labels)
    sq = (arr ** 2).sum(1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * arr @ arr.T, 0.0))
    same = codes[:, None] == codes[None, :]
    diameter = float(dist[same].max())
    separation = float(dist[~same].min())
    return separation / diameter if diameter > 0 else float("inf")


def cluster_indices(x: ArrayLike, labels: ArrayLike) -> ClusterIndices:
    """All four indices of one partition."""
    return ClusterIndices(calinski_harabasz(x, labels), xie_beni(x, labels), davies_bouldin(x, labels), dunn(x, labels))


def two_cluster_chi_xb(a: NDArray[np.float64], b: NDArray[np.float64], wa: NDArray[np.float64] | None = None,
                       wb: NDArray[np.float64] | None = None) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """CHI and XB of clusters ``a`` (na, d) and ``b`` (nb, d) under multiplicity weights (one row per resample).

    Args:
        a: points of the first cluster.
        b: points of the second cluster.
        wa: ``(r, na)`` how often each point of ``a`` is drawn in each of ``r`` resamples (rows sum to ``na``); None: once each.
        wb: the same for ``b``.

    Returns:
        ``(chi, xb)``, each ``(r,)``: the indices of the resampled point sets (duplicates counted).
    """
    shift = np.concatenate([a, b]).mean(0)  # the indices are translation-invariant; centring keeps the sums well conditioned
    a, b = a - shift, b - shift
    wa = np.ones((1, len(a))) if wa is None else wa
    wb = np.ones((1, len(b))) if wb is None else wb
    na, nb = wa.sum(1), wb.sum(1)
    ca, cb = (wa @ a) / na[:, None], (wb @ b) / nb[:, None]
    within = (wa @ (a ** 2).sum(1) - na * (ca ** 2).sum(1)) + (wb @ (b ** 2).sum(1) - nb * (cb ** 2).sum(1))
    within = np.maximum(within, 0.0)
    sep = ((ca - cb) ** 2).sum(1)
    n = na + nb
    between = na * nb / n * sep  # sum_j n_j |c_j - c|^2 for two clusters
    with np.errstate(divide="ignore", invalid="ignore"):
        chi = np.where(within > 0, between * (n - 2) / within, np.inf)
        xb = np.where(sep > 0, within / (n * sep), np.inf)
    return chi, xb
