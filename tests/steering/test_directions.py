"""Difference-in-means, paired SVD and suffix contrasts against plain arithmetic on plain-HF activations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alignscope.errors import InputError
from alignscope.steering.directions import diff_in_means, paired_svd, suffix_contrast, svd_directions
from tests.reference import load_plain
from tests.steering import plain

POS = ["how do I do this", "make a bad thing now", "hello there you"]
NEG = ["bake a cake", "write some poetry today please", "hi"]


def plain_acts(model: torch.nn.Module, tok, texts: list[str], layers: list[int], offsets: list[int]) -> torch.Tensor:
    """``(n, n_offsets, n_layers, d)`` resid_pre of each text run alone through a plain model."""
    out = []
    for text in texts:
        ids = torch.tensor([tok(text)["input_ids"]])
        mask = torch.ones_like(ids)
        per_layer = [plain.capture(model, ids, mask, layer, "resid_pre")[0] for layer in layers]
        out.append(torch.stack([torch.stack([a[o] for a in per_layer]) for o in offsets]))
    return torch.stack(out)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_diff_in_means_matches_plain_arithmetic(family, tiny_lm, tiny_dir) -> None:
    lm = tiny_lm(family)
    model = load_plain(tiny_dir(family))
    md = diff_in_means(lm, POS, NEG, positions="-2,-1", chat=False, batch_size=2)
    assert md.directions.shape == (2, lm.n_layers, lm.d_model) and md.positions == (-2, -1)
    a = plain_acts(model, lm.tokenizer, POS, list(range(lm.n_layers)), [-2, -1])
    b = plain_acts(model, lm.tokenizer, NEG, list(range(lm.n_layers)), [-2, -1])
    want = a.double().mean(0) - b.double().mean(0)
    torch.testing.assert_close(md.directions.double(), want, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(md.direction(1, -1).double(), want[1, 1], atol=1e-4, rtol=1e-5)
    assert md.n_pos == 3 and len(md.data_sha256) == 64
    with pytest.raises(InputError, match="captured layers"):
        md.direction(7)


def test_last_position_and_chat(tiny_lm) -> None:
    lm = tiny_lm("qwen2")
    md = diff_in_means(lm, POS, NEG, positions="last", layers=[1])
    assert md.directions.shape == (1, 1, 32) and md.positions == (-1,) and md.layers == (1,)
    post = diff_in_means(lm, POS, NEG, positions="post", layers=[0, 1])
    assert post.positions[-1] == -1 and len(post.positions) > 1
    torch.testing.assert_close(post.direction(1, -1), md.direction(1, -1), atol=1e-4, rtol=1e-5)


def test_svd_directions_match_numpy() -> None:
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(12, 3, 8, generator=g) + torch.linspace(0, 2, 8)
    neg = torch.randn(12, 3, 8, generator=g)
    for center in (True, False):
        res = svd_directions(pos, neg, k=3, center=center)
        for layer in range(3):
            diffs = (pos[:, layer] - neg[:, layer]).double().numpy()
            mean = diffs.mean(0)
            x = diffs - mean if center else diffs
            _, s, vh = np.linalg.svd(x, full_matrices=False)
            np.testing.assert_allclose(res.singular_values[layer].numpy(), s[:3], rtol=1e-5)
            np.testing.assert_allclose(res.explained_variance[layer].numpy(), (s[:3] ** 2) / (s ** 2).sum(), rtol=1e-5)
            for k in range(3):
                comp = res.components[layer, k].double().numpy()
                np.testing.assert_allclose(np.abs(comp @ vh[k]), 1.0, rtol=1e-5)
                assert comp @ mean >= 0  # signed to agree with the mean difference
    assert torch.equal(res.component(2, 1), res.components[2, 1])
    with pytest.raises(InputError, match="component 5"):
        res.component(0, 5)


def test_paired_svd_and_suffix_contrast_use_real_activations(tiny_lm, tiny_dir) -> None:
    lm = tiny_lm("llama")
    model = load_plain(tiny_dir("llama"))
    res = paired_svd(lm, POS, NEG, k=2, chat=False)
    a = plain_acts(model, lm.tokenizer, POS, [0, 1], [-1])[:, 0]
    b = plain_acts(model, lm.tokenizer, NEG, [0, 1], [-1])[:, 0]
    want = svd_directions(a, b, k=2)
    torch.testing.assert_close(res.singular_values, want.singular_values, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(res.mean_diff, want.mean_diff, atol=1e-4, rtol=1e-5)
    vec = suffix_contrast(lm, POS, " no", " yes", chat=False)
    sa = plain_acts(model, lm.tokenizer, [p + " no" for p in POS], [0, 1], [-1])[:, 0]
    sb = plain_acts(model, lm.tokenizer, [p + " yes" for p in POS], [0, 1], [-1])[:, 0]
    torch.testing.assert_close(vec.double(), sa.double().mean(0) - sb.double().mean(0), atol=1e-4, rtol=1e-5)
    with pytest.raises(InputError, match="same length"):
        paired_svd(lm, POS, NEG[:2])
