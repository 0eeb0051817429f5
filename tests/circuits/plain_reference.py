"""Naive plain-HF patching references: one full forward per site, torch hooks on native modules.

Nothing here touches alignscope's replay machinery or the TransformerBridge: the model is a
fresh ``tests.reference.load_plain`` copy and sites are the native modules named by the
architecture registry (decoder block inputs, attention output projection, MLP output
projection, and the per-head slice of the attention output projection's input). ``resid_mid``
is ``resid_pre + attn_out``: read as that sum, and written by rewriting what attention adds
(``a' = write(pre + a) - pre``), never by touching the residual stream directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from alignscope.models.registry import decoder_layers, get_arch, resolve_module

# What a sublayer writes into the residual stream passes through these norms on Gemma 2/3
# (registry flag post_sublayer_norm); attn_out/mlp_out are defined as what is written.
_POST_NORMS = {"attn_out": "post_attention_layernorm", "mlp_out": "post_feedforward_layernorm"}


def _module(model: torch.nn.Module, component: str, layer: int) -> torch.nn.Module:
    spec = get_arch(model.config.model_type)
    block = decoder_layers(model)[layer]
    if component == "resid_pre":
        return block
    if component in _POST_NORMS and spec.post_sublayer_norm:
        return resolve_module(block, _POST_NORMS[component])
    return resolve_module(block, spec.attn_out if component in ("attn_out", "head") else spec.mlp_out)


@contextmanager
def _hook(module: torch.nn.Module, fn: Callable[..., Any], pre: bool):
    handle = module.register_forward_pre_hook(fn, with_kwargs=True) if pre else module.register_forward_hook(fn)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def _mid_hooks(model: torch.nn.Module, layer: int, on_mid: Callable[[torch.Tensor, torch.Tensor], Any]):
    """Call ``on_mid(pre, attn)`` with the block's input and what attention adds; a tensor it returns replaces ``attn``."""
    block = decoder_layers(model)[layer]
    stash: dict[str, torch.Tensor] = {}

    def pre(_m, args, kwargs):
        stash["x"] = args[0] if args else kwargs["hidden_states"]

    def attn(_m, _args, out):
        a = out[0] if isinstance(out, tuple) else out
        new = on_mid(stash["x"], a)
        if new is None:
            return None
        return (new, *out[1:]) if isinstance(out, tuple) else new

    with _hook(block, pre, True), _hook(_module(model, "attn_out", layer), attn, False):
        yield


def _is_pre(component: str) -> bool:
    return component in ("resid_pre", "head")


def _get(component: str, args: tuple, kwargs: dict, out: Any) -> torch.Tensor:
    if component == "resid_pre":
        return args[0] if args else kwargs["hidden_states"]
    if component == "head":
        return args[0]
    return out[0] if isinstance(out, tuple) else out


def record(model: torch.nn.Module, ids: Sequence[int], component: str) -> list[torch.Tensor]:
    """Per layer, the (seq, width) activation of ``component`` on one prompt (one forward pass)."""
    n_layers = len(decoder_layers(model))
    grabbed: dict[int, torch.Tensor] = {}
    if component == "resid_mid":
        for layer in range(n_layers):
            with _mid_hooks(model, layer, lambda x, a, layer=layer: grabbed.__setitem__(layer, (x + a)[0].detach().clone())), \
                    torch.no_grad():
                model(torch.tensor([list(ids)]))
        return [grabbed[layer] for layer in range(n_layers)]
    handles = []
    for layer in range(n_layers):
        mod = _module(model, component, layer)
        if _is_pre(component):
            def fn(_m, args, kwargs, layer=layer):
                grabbed[layer] = _get(component, args, kwargs, None)[0].detach().clone()
            handles.append(mod.register_forward_pre_hook(fn, with_kwargs=True))
        else:
            def fn_out(_m, _args, out, layer=layer):
                grabbed[layer] = _get(component, (), {}, out)[0].detach().clone()
            handles.append(mod.register_forward_hook(fn_out))
    try:
        with torch.no_grad():
            model(torch.tensor([list(ids)]))
    finally:
        for h in handles:
            h.remove()
    return [grabbed[layer] for layer in range(n_layers)]


def patched_logits(model: torch.nn.Module, ids: Sequence[int], component: str, layer: int,
                   value: torch.Tensor, select: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Last-position logits with ``select(act)`` overwritten by ``value`` at one site."""
    def write(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        select(x)[...] = value
        return x

    return edited_logits(model, ids, component, layer, write)


def edited_logits(model: torch.nn.Module, ids: Sequence[int], component: str, layer: int,
                  write: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Last-position logits with the activation at one site replaced by ``write(act)`` (``(1, seq, width)``)."""
    if component == "resid_mid":
        with _mid_hooks(model, layer, lambda x, a: write(x + a) - x), torch.no_grad():
            return model(torch.tensor([list(ids)])).logits[0, -1]
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


def naive_attribution(model: torch.nn.Module, clean_ids: Sequence[int], corrupt_ids: Sequence[int], component: str,
                      metric: Callable[[torch.Tensor], torch.Tensor], n_heads: int, ig_steps: int) -> torch.Tensor:
    """Gradient x delta (ig_steps=0: gradient at the corrupt run; N: mean over N interpolated inputs), one run per step."""
    src = record(model, clean_ids, component)
    tgt = record(model, corrupt_ids, component)
    emb_clean = record(model, clean_ids, "resid_pre")[0]
    emb_corrupt = record(model, corrupt_ids, "resid_pre")[0]
    alphas = [0.0] if ig_steps == 0 else [(i + 0.5) / ig_steps for i in range(ig_steps)]
    n_layers = len(decoder_layers(model))
    grads = [torch.zeros_like(t) for t in tgt]
    for p in model.parameters():
        p.requires_grad_(False)
    for alpha in alphas:
        start = emb_corrupt + alpha * (emb_clean - emb_corrupt)
        acts: list[torch.Tensor] = []
        handles = []

        def first(_m, args, kwargs, s=start):
            x = s.unsqueeze(0).clone().requires_grad_(True)
            return ((x, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": x})

        handles.append(decoder_layers(model)[0].register_forward_pre_hook(first, with_kwargs=True))
        for layer in range(n_layers):
            mod = _module(model, component, layer)
            if _is_pre(component):
                def keep(_m, args, kwargs, acts=acts):
                    x = _get(component, args, kwargs, None)
                    y = x.clone()
                    y.retain_grad()
                    acts.append(y)
                    return ((y, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": y})
                handles.append(mod.register_forward_pre_hook(keep, with_kwargs=True))
            else:
                def keep_out(_m, _args, out, acts=acts):
                    y = (out[0] if isinstance(out, tuple) else out).clone()
                    y.retain_grad()
                    acts.append(y)
                    return (y, *out[1:]) if isinstance(out, tuple) else y
                handles.append(mod.register_forward_hook(keep_out))
        try:
            with torch.enable_grad():
                logits = model(torch.tensor([list(corrupt_ids)])).logits[0, -1]
                metric(logits).backward()
        finally:
            for h in handles:
                h.remove()
        for layer in range(n_layers):
            grads[layer] += acts[layer].grad[0] / len(alphas)
    contrib = torch.stack([((s - t) * g).sum(-1) if component != "head" else
                           ((s - t) * g).reshape(len(corrupt_ids), n_heads, -1).sum(-1).sum(0)
                           for s, t, g in zip(src, tgt, grads, strict=True)])
    return contrib


def naive_trace(model: torch.nn.Module, ids: Sequence[int], positions: Sequence[int], noise: torch.Tensor,
                kind_module: str, window: int, metric: Callable[[torch.Tensor], float]) -> torch.Tensor:
    """Causal-tracing indirect effects by brute force: one noised forward per (layer, position).

    ``kind_module``: ``resid_post`` (decoder block output), ``attn_out`` or ``mlp_out``.
    """
    spec = get_arch(model.config.model_type)
    embed = resolve_module(model, spec.embed)
    n_layers = len(decoder_layers(model))

    def mod(layer: int) -> torch.nn.Module:
        return decoder_layers(model)[layer] if kind_module == "resid_post" else _module(model, kind_module, layer)

    clean: dict[int, torch.Tensor] = {}
    hs = [mod(i).register_forward_hook(lambda _m, _a, o, i=i: clean.__setitem__(i, (o[0] if isinstance(o, tuple) else o)[0].clone()))
          for i in range(n_layers)]
    with torch.no_grad():
        model(torch.tensor([list(ids)]))
    for h in hs:
        h.remove()

    def add_noise(_m, _a, out):
        out = out.clone()
        out[0, list(positions)] += noise
        return out

    def run(restore: list[int], pos: int | None) -> float:
        handles = [embed.register_forward_hook(add_noise)]
        for layer in restore:
            def put(_m, _a, o, layer=layer):
                x = (o[0] if isinstance(o, tuple) else o).clone()
                x[0, pos] = clean[layer][pos]
                return (x, *o[1:]) if isinstance(o, tuple) else x
            handles.append(mod(layer).register_forward_hook(put))
        try:
            with torch.no_grad():
                return metric(model(torch.tensor([list(ids)])).logits[0, -1])
        finally:
            for h in handles:
                h.remove()

    base = run([], None)
    out = torch.zeros(n_layers, len(ids))
    for layer in range(n_layers):
        lo, hi = max(0, layer - window // 2), min(n_layers, layer - (-window // 2))
        for pos in range(len(ids)):
            out[layer, pos] = run(list(range(lo, max(hi, lo + 1))), pos) - base
    return out


def ablated_metric(model: torch.nn.Module, ids: Sequence[int], ablations: Sequence[tuple[str, int, int | None, int | None]],
                   values: dict[tuple[str, int], torch.Tensor], n_heads: int, metric: Callable[[torch.Tensor], float]) -> float:
    """Metric with each (component, layer, head, position) overwritten by ``values[(component, layer)]`` rows.

    ``values[(c, l)]`` is ``(seq, width)`` (the replacement at every position); a head writes only
    its slice of the attention output projection's input; a position (from the end) only that row.
    """
    handles = []
    for comp, layer, head, pos in ablations:
        repl = values[(comp, layer)]

        def write(x: torch.Tensor, repl=repl, head=head, pos=pos) -> torch.Tensor:
            x = x.clone()
            rows = slice(None) if pos is None else pos
            if head is None:
                x[0, rows] = repl[rows]
            else:
                d = x.shape[-1] // n_heads
                x[0, rows, head * d:(head + 1) * d] = repl[rows, head * d:(head + 1) * d]
            return x

        mod = _module(model, comp, layer)
        if _is_pre(comp):
            def pre(_m, args, kwargs, write=write):
                if args:
                    return (write(args[0]), *args[1:]), kwargs
                return args, {**kwargs, "hidden_states": write(kwargs["hidden_states"])}
            handles.append(mod.register_forward_pre_hook(pre, with_kwargs=True))
        else:
            def post(_m, _a, out, write=write):
                return (write(out[0]), *out[1:]) if isinstance(out, tuple) else write(out)
            handles.append(mod.register_forward_hook(post))
    try:
        with torch.no_grad():
            return metric(model(torch.tensor([list(ids)])).logits[0, -1])
    finally:
        for h in handles:
            h.remove()
