"""Dimensionality reduction: PCA against numpy's SVD (distances, which do not depend on component signs), t-SNE seeded."""

from __future__ import annotations

import numpy as np
import pytest

from alignscope.errors import InputError
from alignscope.geometry.reduce import reduce_points


def pairwise(x: np.ndarray) -> np.ndarray:
    return np.linalg.norm(x[:, None] - x[None], axis=-1)


def test_pca_keeps_the_top_principal_subspace() -> None:
    x = np.random.default_rng(0).normal(size=(20, 6)) * np.array([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])
    centred = x - x.mean(0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    ref = u[:, :3] * s[:3]
    got = reduce_points(x, "pca", n_components=3)
    np.testing.assert_allclose(pairwise(got), pairwise(ref), atol=1e-9)
    assert reduce_points(x, "none") is x


def test_tsne_is_seeded_and_bounded() -> None:
    x = np.random.default_rng(1).normal(size=(15, 4))
    a, b = reduce_points(x, "tsne", n_components=2, seed=3), reduce_points(x, "tsne", n_components=2, seed=3)
    assert a.shape == (15, 2)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="n_components"):
        reduce_points(x, "tsne", n_components=4)
    with pytest.raises(InputError, match="unknown reduction"):
        reduce_points(x, "umap")
