"""A plain HF twin of the bridge-wrapped model, sharing its weights, for fast generation.

The TransformerBridge wraps every HF submodule in place (wrapper modules, about 20 hook points
per block) and forces eager attention, which costs 13-26% of ``generate`` throughput. The twin
is a fresh module of the same class and config, built on the meta device, whose parameters and
buffers are then bound to the bridge model's own tensors (zero copy): the bridge keeps its
``original_component`` modules, so a twin name is found by dropping the wrappers' path
segments (``_original_component.``) from the bridge's names. The twin runs with the class's
default fast attention (``sdpa`` where the class supports it, else ``eager``), set on a copy of
the config; ``lm.config`` is never changed.

Weights are shared, so in-place edits of the bridge's tensors show up in the twin. Hooks on the
bridge's hook points do not fire in the twin: interventions reach it through
:class:`~alignscope.hooks.backends.NativeTarget`.

Example:
    >>> twin = native_model(lm)                                   # doctest: +SKIP
    >>> twin.generate(input_ids=ids, attention_mask=mask)         # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass

import torch

from alignscope.errors import AlignscopeError
from alignscope.models.loader import LoadedModel

log = logging.getLogger(__name__)

_CACHE_KEY = "native_twin"
_WRAPPER_SEGMENT = re.compile(r"(?:^|(?<=\.))_?original_component\.")


class TwinError(AlignscopeError):
    """The native twin cannot be built for this model (the bridge path is used instead)."""


@dataclass(frozen=True)
class _Binding:
    """One twin tensor and where it lives in the bridge model (to detect a later replacement)."""

    owner: torch.nn.Module
    leaf: str
    tensor: torch.Tensor
    is_param: bool

    def current(self) -> bool:
        store = self.owner._parameters if self.is_param else self.owner._buffers
        return store.get(self.leaf) is self.tensor


@dataclass
class _Twin:
    """A cached twin (or the reason there is none) and the bindings that keep it valid."""

    model: torch.nn.Module | None
    bindings: list[_Binding]
    reason: str = ""

    def valid(self) -> bool:
        return all(b.current() for b in self.bindings)


def strip_wrappers(name: str) -> str:
    """A bridge parameter name without the wrappers' path segments.

    Example:
        >>> strip_wrappers("model.layers.0._original_component.mlp._original_component.up_proj.weight")
        'model.layers.0.mlp.up_proj.weight'
    """
    return _WRAPPER_SEGMENT.sub("", name)


def native_model(lm: LoadedModel) -> torch.nn.Module | None:
    """The plain HF twin of ``lm.hf_model`` sharing its tensors, or None when it cannot be built.

    Built once per model and cached in ``lm.extra``; rebuilt if a bridge tensor it shares has
    since been replaced (e.g. ``lm.hf_model.to(...)`` moved a buffer). A model the twin cannot
    mirror (4-bit or other quantised weights, a multi-device map, an unknown naming) gives None,
    logged once at debug level; callers then use the bridge.
    """
    cached = lm.extra.get(_CACHE_KEY)
    if isinstance(cached, _Twin) and (cached.model is None or cached.valid()):
        return cached.model
    try:
        twin, bindings = build_twin(lm.hf_model, lm.dtype)
        entry = _Twin(twin, bindings)
    except Exception as exc:  # any failure means "use the bridge"; the reason is kept for errors and logs
        log.debug("no native twin for %s, using the bridge: %s", lm.name, exc)
        entry = _Twin(None, [], str(exc))
    lm.extra[_CACHE_KEY] = entry
    return entry.model


def twin_unavailable_reason(lm: LoadedModel) -> str:
    """Why :func:`native_model` gave None for ``lm`` (empty when a twin exists)."""
    native_model(lm)
    entry = lm.extra.get(_CACHE_KEY)
    return entry.reason if isinstance(entry, _Twin) else ""


def fast_attention(model_class: type) -> str:
    """``sdpa`` when the class supports it, else ``eager``."""
    return "sdpa" if getattr(model_class, "_supports_sdpa", False) else "eager"


def build_twin(hf_model: torch.nn.Module, dtype: torch.dtype) -> tuple[torch.nn.Module, list[_Binding]]:
    """Build the twin of a bridge-wrapped HF model and bind every tensor to the bridge's.

    Raises:
        TwinError: quantised or dispatched weights, a twin tensor with no bridge counterpart,
            an ambiguous name, or a shape mismatch.
    """
    _check_mirrorable(hf_model)
    cls = type(hf_model)
    config = copy.deepcopy(hf_model.config)
    with torch.device("meta"):
        twin = cls._from_config(config, attn_implementation=fast_attention(cls), dtype=dtype)  # type: ignore[attr-defined]
    sources = _bridge_tensors(hf_model)
    bindings = [_bind(twin, name, sources, is_param=True) for name, _ in twin.named_parameters(remove_duplicate=False)]
    bindings += [_bind(twin, name, sources, is_param=False) for name, _ in twin.named_buffers(remove_duplicate=False)]
    _check_no_meta(twin)
    if getattr(hf_model, "generation_config", None) is not None:
        twin.generation_config = copy.deepcopy(hf_model.generation_config)
    twin.eval()
    return twin, bindings


def _check_mirrorable(hf_model: torch.nn.Module) -> None:
    if getattr(hf_model, "hf_quantizer", None) is not None or getattr(hf_model.config, "quantization_config", None):
        raise TwinError("quantised weights")
    devices = set(getattr(hf_model, "hf_device_map", None) or {}.values())
    if len(devices) > 1 or any(hasattr(m, "_hf_hook") for m in hf_model.modules()):
        raise TwinError("the model is dispatched over devices by accelerate")
    if any(not p.is_floating_point() for p in hf_model.parameters()):
        raise TwinError("non-floating-point (quantised) parameters")


def _bridge_tensors(hf_model: torch.nn.Module) -> dict[str, tuple[torch.nn.Module, str, torch.Tensor, bool]]:
    """Stripped name -> (owning module, leaf name, tensor, is parameter), for every bridge tensor."""
    found: dict[str, tuple[torch.nn.Module, str, torch.Tensor, bool]] = {}
    ambiguous: set[str] = set()
    for mod_name, module in hf_model.named_modules(remove_duplicate=False):
        for store, is_param in ((module._parameters, True), (module._buffers, False)):
            for leaf, tensor in store.items():
                if tensor is None:
                    continue
                key = strip_wrappers(f"{mod_name}.{leaf}" if mod_name else leaf)
                seen = found.get(key)
                if seen is not None and seen[2] is not tensor:
                    ambiguous.add(key)
                found.setdefault(key, (module, leaf, tensor, is_param))
    for key in ambiguous:
        found.pop(key)
    return found


def _bind(twin: torch.nn.Module, name: str, sources: dict[str, tuple[torch.nn.Module, str, torch.Tensor, bool]],
          *, is_param: bool) -> _Binding:
    """Point the twin's ``name`` at the bridge tensor of the same (stripped) name."""
    if name not in sources:
        raise TwinError(f"no unambiguous bridge tensor for {name!r}")
    owner, leaf, tensor, src_is_param = sources[name]
    mod_path, _, twin_leaf = name.rpartition(".")
    module = twin.get_submodule(mod_path)
    current = module._parameters[twin_leaf] if is_param else module._buffers[twin_leaf]
    if current is None or tuple(current.shape) != tuple(tensor.shape):
        raise TwinError(f"shape mismatch for {name!r}: twin {None if current is None else tuple(current.shape)}, "
                        f"bridge {tuple(tensor.shape)}")
    if is_param != src_is_param:
        raise TwinError(f"{name!r} is a {'parameter' if is_param else 'buffer'} in the twin but not in the bridge")
    if is_param:
        module._parameters[twin_leaf] = tensor  # type: ignore[assignment]
    else:
        module._buffers[twin_leaf] = tensor
    return _Binding(owner, leaf, tensor, is_param)


def _check_no_meta(twin: torch.nn.Module) -> None:
    """Every tensor the twin holds (parameters, buffers, plain tensor attributes) must be real."""
    for mod_name, module in twin.named_modules():
        for attr, value in vars(module).items():
            if isinstance(value, torch.Tensor) and value.is_meta:
                raise TwinError(f"{mod_name or 'model'}.{attr} is still on the meta device")
    for name, tensor in (*twin.named_parameters(), *twin.named_buffers()):
        if tensor.is_meta:
            raise TwinError(f"{name} is still on the meta device")
