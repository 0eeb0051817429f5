from __future__ import annotations

import math

import pytest
import torch

from alignscope.evals.capability import first_token_kl, next_token_logits, perplexity
from alignscope.metrics import kl_divergence
from alignscope.models.chat import encode_one
from alignscope.sites import Site
from tests.evals.standins import AddVector
from tests.reference import hf_logits_with_added, load_plain

PROMPTS = ["hello world", "a much longer prompt about bread", "hi"]


def test_kl_divergence_plain_arithmetic() -> None:
    p = torch.tensor([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
    q = torch.tensor([[2.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    pp = [math.exp(x) for x in (0.0, 1.0, 2.0)]
    pp = [x / sum(pp) for x in pp]
    qq = list(reversed(pp))
    expected = sum(a * math.log(a / b) for a, b in zip(pp, qq, strict=True))
    kl = kl_divergence(p, q)
    assert math.isclose(float(kl[0]), expected, rel_tol=1e-6)
    assert float(kl[1]) == 0.0


def test_first_token_kl_matches_plain_hf(tiny_lm, tiny_dir) -> None:
    lm = tiny_lm("mistral")
    plain = load_plain(tiny_dir("mistral"))
    vector = torch.randn(lm.d_model, generator=torch.Generator().manual_seed(1))
    iv = AddVector(Site(1, "resid_post"), vector)
    kl = first_token_kl(lm, PROMPTS, iv, batch_size=2)
    assert kl.shape == (3,) and bool((kl > 0).all())
    for i, prompt in enumerate(PROMPTS):
        ids, _ = encode_one(lm.tokenizer, prompt, chat=True)
        with torch.no_grad():
            base = plain(torch.tensor([ids])).logits[0, -1]
        steered = hf_logits_with_added(plain, ids, 1, vector)[-1]
        lp, lq = torch.log_softmax(base.double(), -1), torch.log_softmax(steered.double(), -1)
        assert math.isclose(float(kl[i]), float((lp.exp() * (lp - lq)).sum()), rel_tol=1e-4, abs_tol=1e-6)
    base_logits = next_token_logits(lm, PROMPTS, batch_size=3)
    assert float(kl_divergence(base_logits, base_logits).abs().max()) == 0.0


def test_perplexity_matches_plain_loss(tiny_lm, tiny_dir) -> None:
    lm = tiny_lm("gpt2")
    plain = load_plain(tiny_dir("gpt2"))
    texts = ["the cat sat on the mat", "bread", "a longer sentence about the weather today"]
    total, count = 0.0, 0
    for t in texts:
        ids = torch.tensor([lm.tokenizer(t)["input_ids"]])
        with torch.no_grad():
            loss = plain(ids, labels=ids).loss
        total += float(loss) * (ids.shape[1] - 1)
        count += ids.shape[1] - 1
    assert math.isclose(perplexity(lm, texts, batch_size=2), math.exp(total / count), rel_tol=1e-4)
    iv = AddVector(Site(0, "resid_post"), torch.ones(lm.d_model) * 5)
    assert perplexity(lm, texts, iv) != perplexity(lm, texts)


def test_kl_summary_bootstrap() -> None:
    from alignscope.evals.capability import kl_summary

    values = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0])
    s = kl_summary(values, n_boot=4000)
    assert s["n"] == 5 and s["mean"] == pytest.approx(0.2) and s["median"] == 0.0 and s["max"] == 1.0
    lo, hi = s["ci95"]
    assert lo == 0.0 and 0.2 < hi <= 0.6  # resampled means are k/5 with k ~ Binomial(5, 0.2)
    assert kl_summary(values, n_boot=4000) == s  # seeded
