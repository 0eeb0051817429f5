"""Condition probes: logistic fit (checked by its optimality conditions), thresholds, pooling, features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alignscope.errors import InputError
from alignscope.models.chat import encode_one
from alignscope.steering.probes import (
    LinearProbe,
    Pooling,
    average_probes,
    chat_span,
    fit_logistic_probe,
    mean_diff_probe,
    probe_features,
    threshold_for_fpr,
)
from tests.reference import load_plain
from tests.steering import plain
from tests.steering.test_conditional import ref_pool


def data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(30, 2, 6, generator=g) + 0.7
    neg = torch.randn(45, 2, 6, generator=g) * 2.0 + 3.0
    return pos, neg


def test_logistic_probe_is_optimal() -> None:
    pos, neg = data()
    l2 = 0.1
    probe = fit_logistic_probe(pos, neg, (3, 5), l2=l2)
    x = torch.cat([pos, neg]).flatten(1).double().numpy()
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    sw = np.r_[np.full(len(pos), 0.5 / len(pos)), np.full(len(neg), 0.5 / len(neg))]
    mu, sigma = x.mean(0), x.std(0, ddof=1)
    w_raw = probe.weight.double().numpy().ravel()
    w_std, b_std = w_raw * sigma, probe.bias + w_raw @ mu  # the fit's parameters on standardised features
    z = (x - mu) / sigma
    p = 1 / (1 + np.exp(-(z @ w_std + b_std)))
    grad_w = z.T @ (sw * (p - y)) + l2 * w_std
    grad_b = (sw * (p - y)).sum()
    assert np.abs(grad_w).max() < 1e-5 and abs(grad_b) < 1e-5
    np.testing.assert_allclose(probe.score(torch.cat([pos, neg])).double().numpy(), x @ w_raw + probe.bias, rtol=1e-4, atol=1e-4)
    acc = ((probe.score(pos) > 0).float().mean() + (probe.score(neg) <= 0).float().mean()) / 2
    assert acc > 0.8


def test_negative_weights_enter_the_loss() -> None:
    pos, neg = data(2)
    w = torch.linspace(0.5, 3.0, len(neg))
    probe = fit_logistic_probe(pos, neg, (0, 1), l2=0.1, neg_weights=w)
    x = torch.cat([pos, neg]).flatten(1).double().numpy()
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    sw = np.r_[np.full(len(pos), 0.5 / len(pos)), 0.5 * w.double().numpy() / float(w.sum())]
    mu, sigma = x.mean(0), x.std(0, ddof=1)
    w_std = probe.weight.double().numpy().ravel() * sigma
    z = (x - mu) / sigma
    p = 1 / (1 + np.exp(-(z @ w_std + probe.bias + probe.weight.double().numpy().ravel() @ mu)))
    assert np.abs(z.T @ (sw * (p - y)) + 0.1 * w_std).max() < 1e-5
    with pytest.raises(InputError, match="neg_weights"):
        fit_logistic_probe(pos, neg, (0, 1), neg_weights=torch.ones(3))


def test_mean_diff_and_average() -> None:
    pos, neg = data(1)
    probe = mean_diff_probe(pos, neg, (0, 1))
    diff = pos.double().mean(0) - neg.double().mean(0)
    unit = diff / diff.norm(dim=-1, keepdim=True) / 2
    torch.testing.assert_close(probe.weight.double(), unit, atol=1e-6, rtol=1e-6)
    mid = (pos.double().mean(0) + neg.double().mean(0)) / 2
    assert abs(float((unit * mid).sum()) + probe.bias) < 1e-5
    a, b = fit_logistic_probe(pos, neg, (0, 1)), fit_logistic_probe(pos[:20], neg[:30], (0, 1))
    avg = average_probes([a, b])
    torch.testing.assert_close(avg.score(pos), (a.score(pos) + b.score(pos)) / 2, atol=1e-5, rtol=1e-5)
    with pytest.raises(InputError, match="same layers"):
        average_probes([a, fit_logistic_probe(pos, neg, (0, 2))])


def test_threshold_for_fpr() -> None:
    neg = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])
    for fpr, want in [(0.0, 5.0), (0.2, 4.0), (0.39, 4.0), (0.4, 3.0)]:
        t = threshold_for_fpr(neg, fpr)
        assert t == want and (neg > t).float().mean() <= fpr
    with pytest.raises(InputError, match="max_fpr"):
        threshold_for_fpr(neg, 1.0)


def test_chat_span_covers_the_user_message(tiny_lm) -> None:
    tok = tiny_lm("llama").tokenizer
    head, tail = chat_span(tok)
    for message in ["hi", "a longer message, with commas"]:
        ids, n_post = encode_one(tok, message, chat=True)
        assert tail == n_post
        assert tok.decode(ids[head:len(ids) - tail]) == message


@pytest.mark.parametrize("pooling", [Pooling("tail", n_read=3), Pooling("span", skip_head=6, skip_tail=12)], ids=["tail", "span"])
def test_probe_features_match_plain(pooling, tiny_lm, tiny_dir) -> None:
    lm = tiny_lm("llama")
    model = load_plain(tiny_dir("llama"))
    texts = ["short", "a much longer prompt than that", "mid size one"]
    feats = probe_features(lm, texts, (1, 0), pooling=pooling, batch_size=2)
    for i, text in enumerate(texts):
        ids = torch.tensor([encode_one(lm.tokenizer, text, chat=True)[0]])
        mask = torch.ones_like(ids)
        for k, layer in enumerate((1, 0)):
            want = ref_pool(plain.capture(model, ids, mask, layer, "resid_pre"), [ids.shape[1]], pooling)[0]
            torch.testing.assert_close(feats[i, k], want, atol=1e-4, rtol=1e-5)


def test_probe_validation() -> None:
    with pytest.raises(InputError, match="does not match"):
        LinearProbe(torch.ones(2, 4), 0.0, (1,))
    with pytest.raises(InputError, match="matching"):
        fit_logistic_probe(torch.ones(3, 1, 4), torch.ones(3, 2, 4), (0,))
