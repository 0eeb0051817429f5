"""The transformers compatibility layer: one cache keyword, read under either name, and the bridge alias."""

from __future__ import annotations

import inspect

import torch
from transformer_lens.model_bridge.generalized_components import AttentionBridge
from transformers import LlamaForCausalLM
from transformers.cache_utils import DynamicCache

from alignscope.hooks.backends import bridge_is_hooked
from alignscope.models.hf_compat import (
    CACHE_KWARG,
    cache_in_call,
    cache_length,
    install_bridge_cache_alias,
    is_compat_hook,
    output_cache,
)


def test_cache_kwarg_is_what_the_installed_forward_takes() -> None:
    assert CACHE_KWARG in inspect.signature(LlamaForCausalLM.forward).parameters


def test_cache_in_call_reads_either_name_and_length() -> None:
    cache = DynamicCache()
    cache.update(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4), 0)
    assert cache_in_call({"cache": cache}) is cache
    assert cache_in_call({"past_key_values": cache}) is cache
    assert cache_in_call({"cache": None, "past_key_values": cache}) is cache
    assert cache_in_call({}) is None
    assert cache_length(cache) == 3
    assert cache_length(None) == 0
    assert cache_length(DynamicCache()) == 0
    assert cache_length(((torch.zeros(1, 2, 5, 4), torch.zeros(1, 2, 5, 4)),)) == 5


def test_output_cache_and_cached_step_equal_a_full_run(tiny_lm) -> None:
    """A prefix cache handed back under CACHE_KWARG gives the full run's last logits (through the bridge)."""
    lm = tiny_lm("llama")
    ids = torch.tensor([[3, 14, 15, 92, 65, 35]])
    with torch.no_grad():
        full = lm.hf_model(ids).logits[0, -1]
        cache = output_cache(lm.hf_model(ids[:, :-1], use_cache=True))
        assert cache_length(cache) == ids.shape[1] - 1
        step = lm.hf_model(ids[:, -1:], use_cache=True, **{CACHE_KWARG: cache}).logits[0, -1]
    torch.testing.assert_close(step, full, atol=1e-5, rtol=1e-5)


def test_alias_hooks_are_installed_once_per_attention_bridge_and_not_interventions(tiny_lm) -> None:
    lm = tiny_lm("llama")
    attention = [m for m in lm.bridge.modules() if isinstance(m, AttentionBridge)]
    assert len(attention) == lm.n_layers
    for m in attention:
        assert sum(is_compat_hook(h) for h in m._forward_pre_hooks.values()) == 1
    assert install_bridge_cache_alias(lm.bridge) == 0  # already there: nothing added
    assert not bridge_is_hooked(lm)
