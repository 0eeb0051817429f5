from __future__ import annotations

import pytest
import torch

from alignscope.circuits.patching import activation_patching
from alignscope.errors import AlignscopeError, InputError
from alignscope.metrics import logit_diff_metric
from alignscope.models.registry import get_arch
from tests.circuits.plain_reference import naive_patching
from tests.reference import ATOL

# Char-level tiny tokenizer: same length, differing in two places.
CLEAN, CORRUPT = "abcde fg", "abXde Yg"
ANSWER, FOIL = 10, 20


def _ids(lm, text):
    return lm.tokenizer(text)["input_ids"]


def _metric_ref(logits: torch.Tensor) -> float:
    return float(logits[ANSWER] - logits[FOIL])


@pytest.mark.parametrize("component", ["resid_pre", "resid_mid", "attn_out", "mlp_out", "head"])
def test_activation_patching_matches_naive_plain_hf(family, component, strong_lm, strong_plain) -> None:
    lm = strong_lm(family)
    if component == "resid_mid" and get_arch(lm.model_type).parallel_attn:
        with pytest.raises(AlignscopeError, match="resid_mid"):
            activation_patching(lm, _ids(lm, CLEAN), _ids(lm, CORRUPT), component=component, metric=logit_diff_metric(ANSWER, FOIL))
        return
    plain = strong_plain(lm.model_type)
    clean, corrupt = _ids(lm, CLEAN), _ids(lm, CORRUPT)
    res = activation_patching(lm, clean, corrupt, component=component, metric=logit_diff_metric(ANSWER, FOIL))
    ref = naive_patching(plain, clean, corrupt, component, _metric_ref, lm.n_heads)
    assert res.effect.shape == ref.shape
    torch.testing.assert_close(res.effect, ref, atol=ATOL, rtol=0)
    assert ref.abs().max() > 1e-3  # the sweep measures something
    with torch.no_grad():
        logits = plain(torch.tensor([clean])).logits[0, -1]
    assert res.clean_metric == pytest.approx(_metric_ref(logits), abs=ATOL)


@pytest.mark.parametrize("component", ["resid_pre", "head"])
def test_noising_direction_matches_naive(component, strong_lm, strong_plain) -> None:
    lm = strong_lm("qwen2")
    plain = strong_plain(lm.model_type)
    clean, corrupt = _ids(lm, CLEAN), _ids(lm, CORRUPT)
    res = activation_patching(lm, clean, corrupt, component=component, metric=logit_diff_metric(ANSWER, FOIL),
                              direction="noise")
    ref = naive_patching(plain, clean, corrupt, component, _metric_ref, lm.n_heads, direction="noise")
    torch.testing.assert_close(res.effect, ref, atol=ATOL, rtol=0)
    assert res.direction == "noise" and res.target_metric == res.clean_metric


def test_identical_prefix_sites_are_exactly_zero(strong_lm) -> None:
    lm = strong_lm("llama")
    clean, corrupt = _ids(lm, CLEAN), _ids(lm, CORRUPT)
    res = activation_patching(lm, clean, corrupt, metric=logit_diff_metric(ANSWER, FOIL))
    first_diff = next(i for i, (a, b) in enumerate(zip(clean, corrupt, strict=True)) if a != b)
    assert first_diff >= 2
    assert torch.all(res.effect[:, :first_diff] == 0)
    # The last block's output at the last position determines the logits: patching it moves the
    # whole logit difference.
    post = activation_patching(lm, clean, corrupt, component="resid_post", metric=logit_diff_metric(ANSWER, FOIL))
    assert post.effect[-1, -1] == pytest.approx(post.clean_metric - post.corrupt_metric, abs=ATOL)
    assert abs(post.clean_metric - post.corrupt_metric) > 0.1


def test_misaligned_prompts_give_a_clear_error(strong_lm) -> None:
    lm = strong_lm("llama")
    with pytest.raises(InputError) as info:
        activation_patching(lm, _ids(lm, "abc"), _ids(lm, "abcd"), metric=logit_diff_metric(ANSWER, FOIL))
    msg = str(info.value)
    assert "same number of tokens" in msg and "clean   (3)" in msg and "corrupt (4)" in msg and "'d'" in msg


def test_bad_site_lists_choices(strong_lm) -> None:
    with pytest.raises(InputError, match="resid_pre, resid_mid"):
        activation_patching(strong_lm("llama"), [1, 2], [1, 3], component="bogus", metric=logit_diff_metric(ANSWER, FOIL))


def test_mean_result_right_aligns_positions() -> None:
    from alignscope.circuits.patching import PatchingResult, mean_result

    a = PatchingResult("resid_pre", "denoise", torch.tensor([[1.0, 2.0, 3.0]]), 2.0, 0.0, ["x", "y", "z"], 1.0)
    b = PatchingResult("resid_pre", "denoise", torch.tensor([[5.0, 7.0]]), 4.0, 1.0, ["y", "z"], 2.0)
    m = mean_result([a, b])
    torch.testing.assert_close(m.effect, torch.tensor([[1.0, 3.5, 5.0]]))
    assert m.tokens == ["-3", "-2", "-1"] and m.clean_metric == 3.0 and m.corrupt_metric == 0.5 and m.seconds == 3.0
    assert m.extra["n_pairs"] == 2


def test_head_per_position_matches_naive_o_proj_slice(strong_lm, strong_plain) -> None:
    from tests.circuits.plain_reference import patched_logits, record

    lm, plain = strong_lm("mistral"), strong_plain("mistral")
    clean, corrupt = _ids(lm, CLEAN), _ids(lm, CORRUPT)
    res = activation_patching(lm, clean, corrupt, component="head", metric=logit_diff_metric(ANSWER, FOIL), per_position=True)
    assert res.effect.shape == (lm.n_layers, lm.n_heads, len(clean))
    src = record(plain, clean, "head")
    with torch.no_grad():
        base = _metric_ref(plain(torch.tensor([corrupt])).logits[0, -1])
    d = src[0].shape[-1] // lm.n_heads
    for layer in range(lm.n_layers):
        for head in (0, lm.n_heads - 1):
            for pos in range(len(clean)):
                cols = slice(head * d, (head + 1) * d)
                logits = patched_logits(plain, corrupt, "head", layer, src[layer][pos, cols], lambda x, c=cols, p=pos: x[0, p, c])
                assert float(res.effect[layer, head, pos]) == pytest.approx(_metric_ref(logits) - base, abs=ATOL)


def test_embedded_model_matches_naive_plain_hf_on_sampled_layers(embedded) -> None:
    from tests.circuits.plain_reference import patched_logits, record
    from tests.reference import assert_close_scaled, load_plain

    tok = embedded.tokenizer
    clean, corrupt = tok("The Eiffel Tower is in")["input_ids"], tok("The Colosseum is in")["input_ids"]
    a, f = tok(" Paris", add_special_tokens=False)["input_ids"][0], tok(" Rome", add_special_tokens=False)["input_ids"][0]
    res = activation_patching(embedded, clean, corrupt, metric=logit_diff_metric(a, f))
    plain = load_plain(embedded.source)
    src = record(plain, clean, "resid_pre")
    with torch.no_grad():
        logits = plain(torch.tensor([corrupt])).logits[0, -1]
    base = float(logits[a] - logits[f])
    layers = [0, embedded.n_layers // 2, embedded.n_layers - 1]
    ref = torch.zeros(len(layers), len(corrupt))
    for i, layer in enumerate(layers):
        for pos in range(len(corrupt)):
            out = patched_logits(plain, corrupt, "resid_pre", layer, src[layer][pos], lambda x, p=pos: x[0, p])
            ref[i, pos] = float(out[a] - out[f]) - base
    assert ref.abs().max() > 1.0
    assert_close_scaled(res.effect[layers], ref)
