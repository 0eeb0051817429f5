from __future__ import annotations

import pytest
import torch

from alignscope.circuits.tracing import causal_trace, embedding_std, subject_noise, subject_positions, window_layers
from alignscope.errors import InputError
from alignscope.models.registry import get_arch, resolve_module
from tests.circuits.plain_reference import naive_trace
from tests.reference import ATOL

PROMPT, SUBJECT = "abcde fg", "cd"


def test_causal_trace_matches_brute_force_plain_hf(family, strong_lm, strong_plain) -> None:
    lm, plain = strong_lm(family), strong_plain(family)
    # Logit difference (not a probability, which saturates on some random models) keeps the check sharp.
    res = causal_trace(lm, PROMPT, SUBJECT, answer="x", foil="y", noise=3.0, seed=7, window=2, kinds=("resid", "attn", "mlp"))
    ids = lm.tokenizer(PROMPT)["input_ids"]
    assert res.subject_positions == [i for i, t in enumerate(lm.tokenizer.convert_ids_to_tokens(ids)) if t in ("c", "d")]
    # Noise scale: 3 x the std of the plain model's embedding output over the whole vocabulary.
    embed = resolve_module(plain, get_arch(plain.config.model_type).embed)
    with torch.no_grad():
        std = embed(torch.arange(lm.vocab_size).unsqueeze(0)).std(unbiased=False).item()
    assert res.noise_std == pytest.approx(3 * std, rel=1e-5)
    noise = subject_noise(len(res.subject_positions), lm.d_model, res.noise_std, 7)
    x, y = lm.tokenizer.convert_tokens_to_ids(["x", "y"])
    assert res.answer_id == x and res.metric == "logit_diff"

    def diff(logits: torch.Tensor) -> float:
        return float(logits[x] - logits[y])

    for kind, comp, window in (("resid", "resid_post", 1), ("attn", "attn_out", 2), ("mlp", "mlp_out", 2)):
        ref = naive_trace(plain, ids, res.subject_positions, noise, comp, window, diff)
        torch.testing.assert_close(res.effects[kind], ref, atol=ATOL, rtol=0, msg=f"{family} {kind}")
    assert abs(res.clean_metric - res.corrupt_metric) > 1e-2  # the noise changes the prediction
    assert min(float(e.abs().max()) for e in res.effects.values()) > 1e-2


def test_trace_is_seeded_and_averages_samples(strong_lm) -> None:
    lm = strong_lm("llama")
    a = causal_trace(lm, PROMPT, SUBJECT, seed=3, samples=2, kinds=("resid",))
    b = causal_trace(lm, PROMPT, SUBJECT, seed=3, samples=2, kinds=("resid",))
    one = causal_trace(lm, PROMPT, SUBJECT, seed=3, samples=1, kinds=("resid",))
    two = causal_trace(lm, PROMPT, SUBJECT, seed=4, samples=1, kinds=("resid",))
    torch.testing.assert_close(a.effects["resid"], b.effects["resid"], atol=0, rtol=0)
    torch.testing.assert_close(a.effects["resid"], (one.effects["resid"] + two.effects["resid"]) / 2, atol=1e-6, rtol=0)
    # Restoring the last block's output at the last position restores the clean prediction.
    assert float(one.effects["resid"][-1, -1]) == pytest.approx(one.clean_metric - one.corrupt_metric, abs=1e-5)
    # Positions before the subject are untouched by the noise: restoring them does nothing.
    assert torch.all(one.effects["resid"][:, : one.subject_positions[0]] == 0)


def test_window_layers_follow_rome() -> None:
    assert window_layers(0, 10, 30) == list(range(0, 5))
    assert window_layers(15, 10, 30) == list(range(10, 20))
    assert window_layers(29, 10, 30) == list(range(24, 30))
    assert window_layers(4, 1, 30) == [4]


def test_subject_errors_and_chat_positions(strong_lm) -> None:
    lm = strong_lm("llama")
    with pytest.raises(InputError, match="does not occur"):
        subject_positions(lm.tokenizer, PROMPT, "zz")
    pos = subject_positions(lm.tokenizer, PROMPT, SUBJECT, chat=True)
    from alignscope.models.chat import encode_one

    ids, _ = encode_one(lm.tokenizer, PROMPT, chat=True)
    assert lm.tokenizer.decode([ids[p] for p in pos]) == SUBJECT
    with pytest.raises(InputError, match="kind"):
        causal_trace(lm, PROMPT, SUBJECT, kinds=("bogus",))


def test_embedding_std_of_unscaled_embedding(strong_lm) -> None:
    lm = strong_lm("llama")
    weight = lm.hf_model.get_input_embeddings().weight
    assert embedding_std(lm, chunk=7) == pytest.approx(float(weight.double().std(unbiased=False)), rel=1e-6)
