"""Naive plain-HF patching references: one full forward per site, torch hooks on native modules.

Nothing here touches alignscope's replay machinery or the TransformerBridge: the model is a
fresh ``tests.reference.load_plain`` copy and sites are the native modules named by the
architecture registry (decoder block inputs, attention output projection, MLP output
projection, and the per-head slice of the attention output projection's input).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from alignscope.models.registry import decoder_layers, get_arch, resolve_module


def _module(model: torch.nn.Module, component: str, layer: int) -> torch.nn.Module:
    spec = get_arch(model.config.model_type)
    block = decoder_layers(model)[layer]
    if component == "resid_pre":
        return block
    return resolve_module(block, spec.attn_out if component in ("attn_out", "head") else spec.mlp_out)


@contextmanager
def _hook(module: torch.nn.Module, fn: Callable[..., Any], pre: bool):
    handle = module.register_forward_pre_hook(fn, with_kwargs=True) if pre else module.register_forward_hook(fn)
    try:
        yield
    finally:
        handle.remove()


def _is_pre(component: str) -> bool:
    return component in ("resid_pre", "head")


def _get(component: str, args: tuple, kwargs: dict, out: Any) -> torch.Tensor:
    if component == "resid_pre":
        return args[0] if args else kwargs["hidden_states"]
    if component == "head":
        return args[0]
    return out[0] if isinstance(out, tuple) else out


def record(model: torch.nn.Module, ids: Sequence[int], component: str) -> list[torch.Tensor]:
    """Per layer, the (seq, width) activation of ``component`` on one prompt."""
    acts: list[torch.Tensor] = []
    for layer in range(len(decoder_layers(model))):
        grabbed: dict[str, torch.Tensor] = {}
        if _is_pre(component):
            def fn(_m, args, kwargs, g=grabbed):
                g["x"] = _get(component, args, kwargs, None)[0].detach().clone()
        else:
            def fn(_m, _args, out, g=grabbed):
                g["x"] = _get(component, (), {}, out)[0].detach().clone()
        with _hook(_module(model, component, layer), fn, _is_pre(component)), torch.no_grad():
            model(torch.tensor([list(ids)]))
        acts.append(grabbed["x"])
    return acts


def patched_logits(model: torch.nn.Module, ids: Sequence[int], component: str, layer: int,
                   value: torch.Tensor, select: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Last-position logits with ``select(act)`` overwritten by ``value`` at one site."""
    def write(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        select(x)[...] = value
        return x

    if component == "resid_pre":
        def fn(_m, args, kwargs):
            if args:
                return (write(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": write(kwargs["hidden_states"])}
    elif component == "head":
        def fn(_m, args, kwargs):
            return (write(args[0]), *args[1:]), kwargs
    else:
        def fn(_m, _args, out):
            return (write(out[0]), *out[1:]) if isinstance(out, tuple) else write(out)
    with _hook(_module(model, component, layer), fn, _is_pre(component)), torch.no_grad():
        return model(torch.tensor([list(ids)])).logits[0, -1]


def naive_patching(model: torch.nn.Module, clean_ids: Sequence[int], corrupt_ids: Sequence[int], component: str,
                   metric: Callable[[torch.Tensor], float], n_heads: int, direction: str = "denoise") -> torch.Tensor:
    """Effect per (layer, position), or per (layer, head) for ``head``: metric(patched) - metric(target)."""
    target, source = (corrupt_ids, clean_ids) if direction == "denoise" else (clean_ids, corrupt_ids)
    with torch.no_grad():
        base = metric(model(torch.tensor([list(target)])).logits[0, -1])
    src = record(model, source, component)
    n_layers = len(decoder_layers(model))
    if component == "head":
        d_head = src[0].shape[-1] // n_heads
        out = torch.zeros(n_layers, n_heads)
        for layer in range(n_layers):
            for h in range(n_heads):
                cols = slice(h * d_head, (h + 1) * d_head)
                logits = patched_logits(model, target, component, layer, src[layer][:, cols], lambda x, c=cols: x[0, :, c])
                out[layer, h] = metric(logits) - base
        return out
    out = torch.zeros(n_layers, len(target))
    for layer in range(n_layers):
        for pos in range(len(target)):
            logits = patched_logits(model, target, component, layer, src[layer][pos], lambda x, p=pos: x[0, p])
            out[layer, pos] = metric(logits) - base
    return out
