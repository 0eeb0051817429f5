"""Where alignscope meets a transformers detail that changed between releases: the one place.

transformers 5.24 renamed the KV-cache keyword from ``past_key_values`` to ``cache`` (in every
``forward`` of the model, its decoder layers and attention modules, and in the output classes),
keeping the old name as a deprecated alias at each decorated entry point until 5.40. Two things
broke on it:

* TransformerLens 4.3's attention bridges read the cache only as ``past_key_values`` (or
  ``layer_past``) from the keywords the HF decoder layer passes them. Under 5.24 they saw no
  cache at all, so every cached decoding step through the bridge attended to itself alone.
  :func:`install_bridge_cache_alias` gives each attention bridge the cache under the old name
  too (a no-op on releases that still pass ``past_key_values``).
* Our conditional steering decides "a new sequence starts" from the cache the causal LM is
  called with, and dilemma patching hands a prefix cache back to the model. Both now go through
  :func:`cache_in_call`, :data:`CACHE_KWARG` and :func:`output_cache`.

The name is detected from the installed library's own signature, not from its version number,
so a backport or a later rename of the alias is seen as it is.

Example:
    >>> CACHE_KWARG in ("cache", "past_key_values")
    True
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import transformers
from transformer_lens.model_bridge.generalized_components import AttentionBridge
from transformers.models.llama import modeling_llama

TRANSFORMERS_VERSION: str = transformers.__version__
_OLD, _NEW = "past_key_values", "cache"
CACHE_NAMES: tuple[str, ...] = (_NEW, _OLD)


def _cache_kwarg() -> str:
    """The keyword a causal LM's ``forward`` takes its KV cache under in the installed transformers."""
    params = inspect.signature(modeling_llama.LlamaForCausalLM.forward).parameters
    return _NEW if _NEW in params else _OLD


CACHE_KWARG: str = _cache_kwarg()


def cache_in_call(kwargs: dict[str, Any]) -> Any:
    """The KV cache a module was called with (under either name; HF passes it by keyword), or None."""
    for name in CACHE_NAMES:
        value = kwargs.get(name)
        if value is not None:
            return value
    return None


def cache_length(cache: Any) -> int:
    """Tokens already held by a KV cache (0 for None or an empty cache)."""
    if cache is None:
        return 0
    if hasattr(cache, "get_seq_length"):
        return int(cache.get_seq_length())
    try:  # legacy tuple-of-tuples cache
        return int(cache[0][0].shape[-2]) if len(cache) else 0
    except (TypeError, IndexError, AttributeError):
        return 0


def output_cache(output: Any) -> Any:
    """The KV cache a model output carries, read under the installed release's field name."""
    return getattr(output, CACHE_KWARG)


def _alias_cache(_module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """Forward pre-hook: hand a ``cache=`` keyword to the bridge under ``past_key_values`` as well."""
    if kwargs.get(_NEW) is None or kwargs.get(_OLD) is not None:
        return None
    return args, {**kwargs, _OLD: kwargs[_NEW]}


_alias_cache.alignscope_compat = True  # type: ignore[attr-defined]


def is_compat_hook(fn: Any) -> bool:
    """Whether a module hook is one of this module's compatibility hooks (not an intervention)."""
    return bool(getattr(fn, "alignscope_compat", False))


def install_bridge_cache_alias(bridge: torch.nn.Module) -> int:
    """Give every attention bridge inside ``bridge`` the KV cache under both names; returns how many.

    Permanent for the loaded model (it is part of loading, like the bridge's own wiring) and a
    no-op where transformers still passes ``past_key_values``. :func:`is_compat_hook` tells these
    hooks apart from interventions.
    """
    count = 0
    for module in bridge.modules():
        if isinstance(module, AttentionBridge) and not any(is_compat_hook(h) for h in module._forward_pre_hooks.values()):
            module.register_forward_pre_hook(_alias_cache, with_kwargs=True)
            count += 1
    return count
