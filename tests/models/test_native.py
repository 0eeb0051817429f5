"""The native twin: zero-copy sharing with the bridge model, logits equal to a fresh plain HF model, fallbacks."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import AutoModelForCausalLM

from alignscope.models import native
from alignscope.models.chat import left_pad
from alignscope.models.loader import load_model
from alignscope.models.native import TwinError, build_twin, native_model, strip_wrappers, twin_unavailable_reason
from tests.reference import assert_close_scaled, load_plain
from tests.steering.plain import position_ids

SEQS = [[10, 11, 12, 13, 14, 15, 16, 17], [20, 21, 22], [30, 31, 32, 33, 34]]


def storages(module: torch.nn.Module) -> set[int]:
    """Untyped-storage addresses of every parameter and buffer (what memory the module holds)."""
    tensors = [*module.parameters(), *module.buffers()]
    return {t.untyped_storage().data_ptr() for t in tensors if t.numel()}


def test_twin_shares_every_tensor_with_the_bridge_model(family, tiny_lm) -> None:
    lm = tiny_lm(family)
    twin = native_model(lm)
    assert twin is not None, twin_unavailable_reason(lm)
    assert native_model(lm) is twin  # cached
    assert twin is not lm.hf_model and type(twin) is type(lm.hf_model)
    bridge = {strip_wrappers(n): t for n, t in lm.hf_model.named_parameters(remove_duplicate=False)}
    bridge_bufs = {strip_wrappers(n): t for n, t in lm.hf_model.named_buffers(remove_duplicate=False)}
    names = list(twin.named_parameters(remove_duplicate=False))
    assert names
    for name, param in names:
        assert param.data_ptr() == bridge[name].data_ptr() and param.shape == bridge[name].shape, name
    for name, buf in twin.named_buffers(remove_duplicate=False):
        assert not buf.is_meta and buf.data_ptr() == bridge_bufs[name].data_ptr(), name
    assert storages(twin) <= storages(lm.hf_model)  # the twin holds no memory of its own
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in twin.modules())


def test_twin_uses_fast_attention_on_a_config_copy(family, tiny_lm) -> None:
    lm = tiny_lm(family)
    before = lm.config._attn_implementation
    twin = native_model(lm)
    assert twin is not None
    assert twin.config is not lm.config
    assert lm.config._attn_implementation == before
    want = "sdpa" if getattr(type(lm.hf_model), "_supports_sdpa", False) else "eager"
    assert twin.config._attn_implementation == want
    assert not twin.training


@pytest.mark.parametrize("attention", ["default", "eager"])
def test_twin_logits_equal_a_fresh_plain_model(family, tiny_lm, tiny_dir, attention) -> None:
    lm = tiny_lm(family)
    twin = native_model(lm)
    assert twin is not None
    path = str(tiny_dir(family))
    plain = load_plain(path) if attention == "eager" else AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    ids, mask = left_pad(SEQS, 3)
    real, pos = mask.bool(), position_ids(mask)  # the bridge derives positions from the mask; plain HF needs them given
    with torch.no_grad():
        got = twin(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        want = plain(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        bridge = lm.bridge(ids, attention_mask=mask)
    assert_close_scaled(got[real], want[real])
    assert_close_scaled(got[real], bridge[real])


def test_twin_sees_in_place_weight_edits(tiny_dir) -> None:
    lm = load_model(str(tiny_dir("llama")), device="cpu")
    twin = native_model(lm)
    assert twin is not None
    ids = torch.tensor([SEQS[0]])
    with torch.no_grad():
        before = twin(ids).logits
        weight = lm.hf_model.get_output_embeddings().weight
        weight.mul_(2.0)
        try:
            after = twin(ids).logits
            bridge = lm.bridge(ids)
        finally:
            weight.div_(2.0)
    assert (after - before).abs().max() > 1e-3
    assert_close_scaled(after, bridge)


def test_twin_is_rebuilt_when_a_bridge_tensor_is_replaced(tiny_dir) -> None:
    lm = load_model(str(tiny_dir("llama")), device="cpu")
    first = native_model(lm)
    assert first is not None
    owner = next(m for m in lm.hf_model.modules() if "inv_freq" in m._buffers)
    owner._buffers["inv_freq"] = owner._buffers["inv_freq"].clone()  # what .to(...) does to buffers
    second = native_model(lm)
    assert second is not None and second is not first
    assert next(b for n, b in second.named_buffers() if n.endswith("rotary_emb.inv_freq")) is owner._buffers["inv_freq"]


def test_failure_gives_none_logged_once_and_cached(tiny_dir, monkeypatch, caplog) -> None:
    lm = load_model(str(tiny_dir("qwen2")), device="cpu")
    calls = []

    def broken(*args: object) -> None:
        calls.append(1)
        raise TwinError("unknown naming")

    monkeypatch.setattr(native, "build_twin", broken)
    with caplog.at_level(logging.DEBUG, logger="alignscope.models.native"):
        assert native_model(lm) is None
        assert native_model(lm) is None
    assert len(calls) == 1
    assert [r.levelno for r in caplog.records if r.name == "alignscope.models.native"] == [logging.DEBUG]
    assert "unknown naming" in twin_unavailable_reason(lm)


def test_build_twin_refuses_quantised_and_mismatched_models(tiny_dir) -> None:
    model = load_plain(tiny_dir("llama"))
    model.config.quantization_config = {"load_in_4bit": True}
    with pytest.raises(TwinError, match="quantised"):
        build_twin(model, torch.float32)
    del model.config.quantization_config
    twin, bindings = build_twin(model, torch.float32)  # a plain model is its own naming: fine
    assert len(bindings) >= len(list(twin.parameters()))
    model.lm_head.weight = torch.nn.Parameter(torch.zeros(5, 32))
    with pytest.raises(TwinError, match="shape mismatch"):
        build_twin(model, torch.float32)


def test_strip_wrappers() -> None:
    assert strip_wrappers("model.layers.0._original_component.self_attn._original_component.o_proj._original_component.weight") \
        == "model.layers.0.self_attn.o_proj.weight"
    assert strip_wrappers("original_component.lm_head.weight") == "lm_head.weight"
    assert strip_wrappers("model.my_original_component.weight") == "model.my_original_component.weight"


def test_embedded_twin_matches_the_bridge(embedded) -> None:
    twin = native_model(embedded)
    assert twin is not None
    assert storages(twin) <= storages(embedded.hf_model)
    ids, mask = left_pad([[1, 9690, 314, 253, 1345], [1, 504, 2]], int(embedded.tokenizer.pad_token_id))
    real = mask.bool()
    with torch.no_grad():
        got = twin(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits
        want = embedded.bridge(ids, attention_mask=mask)
    assert_close_scaled(got[real], want[real])
