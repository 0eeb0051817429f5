"""Independent plain-HF references for DLA and the logit lens.

A FRESH model from ``tests.reference.load_plain`` with torch forward hooks on the decoder layers,
the output projections' inputs and the MLP (or post-norm) outputs; the final norm, the
unembedding and Gemma-2's soft-cap are applied by hand here, from the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from alignscope.models.registry import decoder_layers, get_arch, resolve_module

GEMMA_NORM = ("gemma2", "gemma3_text")  # RMSNorm with (1 + w) and norms after each sublayer


def _first(x: Any) -> torch.Tensor:
    return x[0] if isinstance(x, tuple) else x


def _eps(norm: torch.nn.Module) -> float:
    for name in ("variance_epsilon", "eps", "epsilon"):
        if hasattr(norm, name):
            return float(getattr(norm, name))
    raise AssertionError(f"no eps on {type(norm).__name__}")


def frozen_norm(model_type: str, norm: torch.nn.Module, x: torch.Tensor) -> tuple[bool, torch.Tensor, torch.Tensor]:
    """``(center, gain, bias)`` of ``norm`` with its scale frozen at ``x``, written out by hand per family."""
    eps = _eps(norm)
    if isinstance(norm, torch.nn.LayerNorm):
        scale = torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + eps)
        return True, norm.weight.detach() / scale, norm.bias.detach()
    w = norm.weight.detach() + (1.0 if model_type in GEMMA_NORM else 0.0)
    scale = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return False, w / scale, torch.zeros_like(w)


def apply_linear(center: bool, gain: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(-1, keepdim=True) if center else x) * gain


def collect(model: torch.nn.Module, ids: Sequence[int]) -> dict[str, Any]:
    """One un-padded run with hooks: resid_pre@0, each layer's output, o_proj input/output, MLP writes."""
    mt = model.config.model_type
    spec = get_arch(mt)
    got: dict[str, Any] = {"post": [], "z": [], "mlp": [], "attn_post": []}
    handles = []
    layers = decoder_layers(model)

    def pre0(_m: Any, args: tuple, kwargs: dict) -> None:
        got["embed"] = (args[0] if args else kwargs["hidden_states"])[0, -1].detach().clone()

    handles.append(layers[0].register_forward_pre_hook(pre0, with_kwargs=True))
    for layer in layers:
        handles.append(layer.register_forward_hook(lambda _m, _i, o: got["post"].append(_first(o)[0, -1].detach().clone())))
        proj = resolve_module(layer, spec.attn_out)
        handles.append(proj.register_forward_pre_hook(lambda _m, a: got["z"].append(a[0][0, -1].detach().clone())))
        mlp_mod = layer.post_feedforward_layernorm if mt in GEMMA_NORM else layer.mlp
        handles.append(mlp_mod.register_forward_hook(lambda _m, _i, o: got["mlp"].append(_first(o)[0, -1].detach().clone())))
        if mt in GEMMA_NORM:
            handles.append(layer.post_attention_layernorm.register_forward_hook(
                lambda _m, i, o: got["attn_post"].append((i[0][0, -1].detach().clone(), o[0, -1].detach().clone()))))
    try:
        with torch.no_grad():
            got["logits"] = model(torch.tensor([list(ids)])).logits[0, -1].detach()
    finally:
        for h in handles:
            h.remove()
    return got


def reference_dla(model: torch.nn.Module, ids: Sequence[int], answer: int, foil: int) -> dict[str, Any]:
    """Embed / attn / mlp / head shares of ``logit[answer] - logit[foil]`` and the model's own value."""
    mt = model.config.model_type
    spec = get_arch(mt)
    got = collect(model, ids)
    n = len(got["post"])
    pre = [got["embed"], *got["post"][:-1]]
    attn = [got["post"][i] - pre[i] - got["mlp"][i] for i in range(n)]
    final = got["post"][-1]
    center, gain, nbias = frozen_norm(mt, resolve_module(model, spec.final_norm), final)
    head = model.get_output_embeddings()
    w_u, b_u = head.weight.detach(), head.bias.detach() if getattr(head, "bias", None) is not None else None
    pre_logits = w_u @ apply_linear(center, gain, final) + w_u @ nbias + (0 if b_u is None else b_u)
    cap = getattr(model.config, "final_logit_softcapping", None)
    r = torch.ones_like(pre_logits) if not cap else (cap * torch.tanh(pre_logits / cap)) / pre_logits
    direction = r[answer] * w_u[answer] - r[foil] * w_u[foil]

    def share(x: torch.Tensor) -> float:
        return float(direction @ apply_linear(center, gain, x))

    heads = []
    for i, layer in enumerate(decoder_layers(model)):
        proj = resolve_module(layer, spec.attn_out)
        w = proj.weight.detach()
        z = got["z"][i]
        n_heads = model.config.num_attention_heads if hasattr(model.config, "num_attention_heads") else model.config.n_head
        dh = z.numel() // n_heads
        outs = [z[h * dh:(h + 1) * dh] @ (w[h * dh:(h + 1) * dh] if spec.conv1d else w[:, h * dh:(h + 1) * dh].T)
                for h in range(n_heads)]
        if mt in GEMMA_NORM:
            o_in, _ = got["attn_post"][i]
            c2, g2, _ = frozen_norm(mt, layer.post_attention_layernorm, o_in)
            outs = [apply_linear(c2, g2, o) for o in outs]
        heads.append([share(o) for o in outs])
    return {"logit_diff": float(got["logits"][answer] - got["logits"][foil]), "embed": share(got["embed"]),
            "attn": [share(a) for a in attn], "mlp": [share(m) for m in got["mlp"]], "heads": heads}


def reference_lens(model: torch.nn.Module, resid_post: torch.Tensor) -> torch.Tensor:
    """Logit lens by hand: the plain model's final norm module, then ``W_U x + b`` and the soft-cap."""
    spec = get_arch(model.config.model_type)
    head = model.get_output_embeddings()
    with torch.no_grad():
        logits = resolve_module(model, spec.final_norm)(resid_post) @ head.weight.T
        if getattr(head, "bias", None) is not None:
            logits = logits + head.bias
        cap = getattr(model.config, "final_logit_softcapping", None)
        return cap * torch.tanh(logits / cap) if cap else logits
