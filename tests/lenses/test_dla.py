from __future__ import annotations

import pytest
import torch

from alignscope.errors import AlignscopeError, InputError
from alignscope.lenses.dla import direct_logit_attribution
from alignscope.lenses.unembed import freeze_norm
from tests.lenses.hf_readout import reference_dla
from tests.reference import load_plain

TEXT = "hello there, friend"


def _check(res, ref, atol: float) -> None:
    assert abs(res.logit_diff - ref["logit_diff"]) <= atol
    assert abs(res.total() - ref["logit_diff"]) <= atol  # parts + remainder add up to the model's own value
    assert abs(res.embed - ref["embed"]) <= atol
    torch.testing.assert_close(res.attn, torch.tensor(ref["attn"]), atol=atol, rtol=0)
    torch.testing.assert_close(res.mlp, torch.tensor(ref["mlp"]), atol=atol, rtol=0)
    torch.testing.assert_close(res.heads, torch.tensor(ref["heads"]), atol=atol, rtol=0)
    torch.testing.assert_close(res.heads.sum(1) + res.head_bias, res.attn, atol=atol, rtol=0)


def test_dla_matches_plain_hf_on_every_family(family, tiny_lm, tiny_dir) -> None:
    lm = tiny_lm(family)
    ids = lm.tokenizer(TEXT)["input_ids"]
    answer, foil = lm.tokenizer.convert_tokens_to_ids("a"), lm.tokenizer.convert_tokens_to_ids("z")
    res = direct_logit_attribution(lm, ids, answer, foil)
    ref = reference_dla(load_plain(tiny_dir(family)), ids, answer, foil)
    _check(res, ref, atol=1e-4)
    assert res.logit_diff != 0 and res.attn.abs().sum() > 0 and res.mlp.abs().sum() > 0


def test_dla_matches_plain_hf_on_embedded(embedded) -> None:
    res = direct_logit_attribution(embedded, "The capital of France is", " Paris", " London", chat=False)
    ref = reference_dla(load_plain(embedded.source), res_ids(embedded), res.answer_id, res.foil_id)
    _check(res, ref, atol=1e-3)
    assert res.logit_diff > 1  # the model knows the answer
    assert len(res.components(by_head=True)) == 1 + 2 * embedded.n_layers + embedded.n_layers * embedded.n_heads


def res_ids(lm) -> list[int]:
    return lm.tokenizer("The capital of France is")["input_ids"]


def test_single_token_answers_are_enforced(tiny_lm) -> None:
    lm = tiny_lm("llama")
    with pytest.raises(InputError, match="single token"):
        direct_logit_attribution(lm, "abc", "ab", "c", chat=False)


def test_unknown_norm_is_rejected() -> None:
    class Odd(torch.nn.Module):
        weight = torch.nn.Parameter(torch.ones(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(x)

    with pytest.raises(AlignscopeError, match="cannot linearise"):
        freeze_norm(Odd(), torch.randn(3, 4))
