"""Optional, seeded dimensionality reduction before the cluster indices: none, PCA or t-SNE (scikit-learn)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from alignscope.errors import InputError

Reduce = Literal["none", "pca", "tsne"]
REDUCTIONS = ("none", "pca", "tsne")


def reduce_points(x: NDArray[np.float64], method: str = "none", *, n_components: int = 3, seed: int = 0) -> NDArray[np.float64]:
    """``x`` (n, d) unchanged (``none``), projected on its first principal components (``pca``), or embedded by t-SNE.

    t-SNE uses scikit-learn's Barnes-Hut solver (so at most 3 components) with perplexity ``min(30, n - 1)``,
    PCA initialisation and ``random_state=seed``.

    Raises:
        InputError: an unknown method or a bad number of components.
    """
    if method not in REDUCTIONS:
        raise InputError(f"unknown reduction {method!r}; expected one of {', '.join(REDUCTIONS)}", field="reduce")
    if method == "none":
        return x
    if n_components < 1 or (method == "tsne" and n_components > 3):
        raise InputError(f"n_components {n_components} out of range (1..{3 if method == 'tsne' else 'd'})", field="n_components")
    k = min(n_components, x.shape[0], x.shape[1])
    if method == "pca":
        return np.asarray(PCA(n_components=k, svd_solver="full").fit_transform(x), dtype=np.float64)
    perplexity = float(min(30, x.shape[0] - 1))
    tsne = TSNE(n_components=k, perplexity=perplexity, init="pca", random_state=seed)
    with threadpool_limits(1):  # scikit-learn's OpenMP threads beside torch's spin against each other: 30x slower on 2 cores
        return np.asarray(tsne.fit_transform(x), dtype=np.float64)
