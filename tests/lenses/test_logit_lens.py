from __future__ import annotations

import pytest
import torch

from alignscope.errors import InputError
from alignscope.lenses.logit_lens import lens_logits, logit_lens, resid_posts
from alignscope.lenses.tuned_lens import TunedLens
from tests.lenses.hf_readout import reference_lens
from tests.reference import assert_close_scaled, hf_resid_post, load_plain


def _check_against_reference(lm, ref_model, ids, track: list[str]) -> None:
    res = logit_lens(lm, ids, track=track, top_k=5)
    expected = reference_lens(ref_model, hf_resid_post(ref_model, ids)[:, -1])  # (layers, vocab)
    probs = torch.softmax(expected, dim=-1)
    top = probs.topk(5, dim=-1)
    got = torch.tensor([layer.top_probs for layer in res.layers])
    torch.testing.assert_close(got, top.values, atol=1e-4, rtol=1e-4)
    for layer, readout in enumerate(res.layers):
        assert readout.layer == layer
        # ids agree except where two probabilities tie to float precision
        for i, (a, b) in enumerate(zip(readout.top_token_ids, top.indices[layer].tolist(), strict=True)):
            assert a == b or abs(float(probs[layer, a]) - float(top.values[layer, i])) < 1e-5
        for text in track:
            tid = lm.tokenizer.convert_tokens_to_ids(lm.tokenizer.tokenize(text)[0])
            t = readout.tracked[text]
            assert t.id == tid
            assert abs(t.logit - float(expected[layer, tid])) <= 1e-3
            assert t.rank == int((expected[layer] > expected[layer, tid]).sum())
    # the last layer's read-out is the model's own output distribution
    with torch.no_grad():
        final = ref_model(torch.tensor([list(ids)])).logits[0, -1]
    assert_close_scaled(expected[-1], final)


def test_logit_lens_matches_plain_hf_on_every_family(family, tiny_lm, tiny_dir) -> None:
    lm = tiny_lm(family)
    ids = lm.tokenizer("the quick brown fox")["input_ids"]
    _check_against_reference(lm, load_plain(tiny_dir(family)), ids, ["x", "e"])


def test_logit_lens_matches_plain_hf_on_embedded(embedded) -> None:
    ids = embedded.tokenizer("The capital of France is")["input_ids"]
    _check_against_reference(embedded, load_plain(embedded.source), ids, [" Paris"])
    res = logit_lens(embedded, "The capital of France is", chat=False, track=[" Paris"])
    assert res.layers[-1].top_tokens[0] == " Paris"
    traj = res.trajectory(" Paris")
    assert traj["rank"][-1] == 0 and traj["rank"][0] > 100  # the answer surfaces only late


def test_identity_tuned_lens_is_the_logit_lens(tiny_lm) -> None:
    lm = tiny_lm("qwen3")
    resid, _ = resid_posts(lm, torch.tensor([lm.tokenizer("some text")["input_ids"]]))
    lens = TunedLens.for_model(lm)
    torch.testing.assert_close(lens_logits(lm, resid, lens), lens_logits(lm, resid), atol=0, rtol=0)


def test_lens_errors(tiny_lm) -> None:
    lm = tiny_lm("llama")
    with pytest.raises(InputError, match="single token"):
        logit_lens(lm, "abc", chat=False, track=["ab"])
    with pytest.raises(InputError, match="position"):
        logit_lens(lm, "abc", chat=False, position=-50)
