"""The one read primitive against hand-written hooks on a fresh plain HF model; no hook outlives a read."""

from __future__ import annotations

import pytest
import torch

from alignscope.errors import SiteError
from alignscope.hooks.read import read
from alignscope.models.chat import left_pad
from alignscope.sites import Site
from tests.reference import load_plain
from tests.steering import plain

SEQS = [[10, 11, 12, 13, 14, 15], [20, 21, 22], [30, 31, 32, 33]]


def hook_count(lm) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in lm.hf_model.modules())


@pytest.mark.parametrize("component", ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"])
def test_read_matches_plain_hf_in_a_padded_batch(family, tiny_lm, tiny_dir, component) -> None:
    lm = tiny_lm(family)
    if component == "resid_mid" and "blocks.0.hook_resid_mid" not in lm.bridge.hook_dict:
        pytest.skip("no resid_mid on parallel attention (its error is checked below)")
    model = load_plain(tiny_dir(family))
    ids, mask = left_pad(SEQS, 3)
    real = mask.bool()
    got = read(lm, [Site(1, component)], ids, mask)
    if component == "resid_mid":  # plain reference: resid_pre + what attention adds
        want = plain.capture(model, ids, mask, 1, "resid_pre") + plain.capture(model, ids, mask, 1, "attn_out")
    else:
        want = plain.capture(model, ids, mask, 1, component)
    torch.testing.assert_close(got.acts[Site(1, component)][real], want[real], atol=1e-5, rtol=1e-5)
    assert got.logits is not None
    torch.testing.assert_close(got.logits[real], plain.plain_logits(model, ids, mask)[real], atol=1e-5, rtol=1e-5)


def test_select_stop_and_layout(tiny_lm) -> None:
    lm = tiny_lm("llama")
    ids, mask = left_pad(SEQS, 3)
    full = read(lm, [Site(0, "resid_post"), Site(0, "head")], ids, mask)
    head = full.acts[Site(0, "head")]
    assert head.shape == (3, ids.shape[1], lm.n_heads, lm.d_head)  # TransformerLens' per-head layout
    last = read(lm, [Site(0, "resid_post")], ids, mask, stop_at_layer=1, select=lambda _s, a: a[:, -1].clone())
    assert last.logits is None
    torch.testing.assert_close(last.acts[Site(0, "resid_post")], full.acts[Site(0, "resid_post")][:, -1])


def test_bad_site_is_a_clear_error_and_no_hook_stays(tiny_lm) -> None:
    lm = tiny_lm("falcon")
    before = hook_count(lm)
    with pytest.raises(SiteError, match="resid_mid"):
        read(lm, [Site(0, "resid_post"), Site(0, "resid_mid")], torch.tensor([[1, 2, 3]]))
    with pytest.raises(SiteError, match="out of range"):
        read(lm, [Site(99, "resid_post")], torch.tensor([[1, 2, 3]]))

    def boom(_s: Site, _a: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        read(lm, [Site(0, "resid_post")], torch.tensor([[1, 2, 3]]), select=boom)
    assert hook_count(lm) == before
