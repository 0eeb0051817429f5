"""Pooled hidden states against a plain HF forward with output_hidden_states, sparsemax against a simplex projection,
and the learned layer weights on data where one layer separates the clusters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignscope.errors import InputError
from alignscope.geometry.indices import calinski_harabasz
from alignscope.geometry.pooling import LayerWeights, fisher_ratio, fit_layer_weights, layer_states, sparsemax

TEXTS = ["hello there", "a b c d e f", "the quick brown fox jumps", "x"]


def hf_states(path, texts: list[str], pool: str) -> np.ndarray:
    """Each prompt alone (no padding) through plain HF: hidden_states[l + 1] is block l's output."""
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()
    rows = []
    for t in texts:
        ids = torch.tensor([tok(t)["input_ids"]])
        with torch.no_grad():
            hs = model(ids, output_hidden_states=True).hidden_states
        rows.append([(h[0].mean(0) if pool == "mean" else h[0, -1]).double().numpy() for h in hs[1:]])
    return np.array(rows)


@pytest.mark.parametrize("pool", ["mean", "last"])
def test_layer_states_equal_plain_hf(tiny_dir, tiny_lm, pool: str) -> None:
    lm = tiny_lm("llama")
    got = layer_states(lm, TEXTS, token_pool=pool, chat=False, batch_size=3)
    ref = hf_states(tiny_dir("llama"), TEXTS, pool)
    assert got.shape == (len(TEXTS), lm.n_layers, lm.d_model)
    # the last entry of HF's hidden_states has the final norm applied; every block before it is the raw residual
    np.testing.assert_allclose(got[:, :-1], ref[:, :-1], atol=1e-4, rtol=1e-4)


def simplex_projection(z: list[float]) -> list[float]:
    """argmin_p |p - z|^2 on the simplex, by bisection on the threshold tau (sum max(z - tau, 0) = 1)."""
    lo, hi = min(z) - 1.0, max(z)
    for _ in range(200):
        tau = (lo + hi) / 2
        if sum(max(v - tau, 0.0) for v in z) > 1:
            lo = tau
        else:
            hi = tau
    return [max(v - (lo + hi) / 2, 0.0) for v in z]


@pytest.mark.parametrize("z", [[0.1, 0.2, 0.3], [3.0, -1.0, 0.5, 2.9], [0.0, 0.0], [10.0, 0.0, 0.0]])
def test_sparsemax_is_the_simplex_projection(z: list[float]) -> None:
    got = sparsemax(torch.tensor(z, dtype=torch.float64)).tolist()
    assert got == pytest.approx(simplex_projection(z), abs=1e-9)


def synthetic_states(seed: int, n: int = 30, layers: int = 4, d: int = 5, good: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n // 2)
    states = rng.normal(size=(n, layers, d)) * (1 + np.arange(layers))[None, :, None]  # layers of different scales
    states[labels == 1, good, 0] += 4.0 * (1 + good)
    return states, labels


def test_fisher_ratio_is_chi_over_n_minus_2() -> None:
    states, labels = synthetic_states(0)
    x = states[:, 1]
    assert float(fisher_ratio(torch.tensor(x), torch.tensor(labels))) == pytest.approx(calinski_harabasz(x, labels) / (len(x) - 2))


@pytest.mark.parametrize("weighting", ["softmax", "sparsemax"])
def test_learned_weights_find_the_separating_layer(weighting: str) -> None:
    states, labels = synthetic_states(1)
    w = fit_layer_weights(states, labels, weighting=weighting, steps=200, lr=0.1)  # type: ignore[arg-type]
    assert sum(w.weights) == pytest.approx(1.0) and min(w.weights) >= 0
    assert int(np.argmax(w.weights)) == 2 and w.weights[2] > 0.5
    uniform = LayerWeights((0.25,) * 4, w.scales, weighting)
    assert calinski_harabasz(w.apply(states), labels) > calinski_harabasz(uniform.apply(states), labels)
    # applying is sum_l w_l s_l h_l, written out
    ref = sum(w.weights[layer] * w.scales[layer] * states[:, layer] for layer in range(4))
    np.testing.assert_allclose(w.apply(states), ref, rtol=1e-12)


def test_learned_weights_reject_too_few_prompts() -> None:
    states, _ = synthetic_states(2, n=4)
    with pytest.raises(InputError, match="at least 2 train prompts"):
        fit_layer_weights(states, [0, 1, 1, 1])
