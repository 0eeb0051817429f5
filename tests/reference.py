"""Independent plain-HF references: a fresh native model with torch forward hooks on decoder blocks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from alignscope.models.registry import decoder_layers

# fp32 activations reach |x| ~ 500 in the embedded model's last layers, where one ulp is 6e-5
# and batch shape changes GEMM blocking: 1e-4 absolute plus 1e-6 relative covers that, and
# nothing more (tiny models stay inside the plain 1e-4).
ATOL = 1e-4
RTOL = 1e-6


def load_plain(path: str | Path) -> torch.nn.Module:
    """A fresh, unwrapped HF model (the bridge wraps modules in place, so never reuse its model)."""
    # Eager attention, as the bridge uses: the reference then differs only in what it computes.
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return model


def _out(output: object) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output  # type: ignore[return-value]


def hf_resid_post(model: torch.nn.Module, ids: Sequence[int]) -> torch.Tensor:
    """``(n_layers, seq, d_model)`` block outputs for one un-padded prompt, via forward hooks."""
    outs: list[torch.Tensor] = []
    handles = [layer.register_forward_hook(lambda _m, _i, o: outs.append(_out(o)[0].detach().clone()))
               for layer in decoder_layers(model)]
    try:
        with torch.no_grad():
            model(torch.tensor([list(ids)]))
    finally:
        for h in handles:
            h.remove()
    return torch.stack(outs)


def hf_logits_with_added(model: torch.nn.Module, ids: Sequence[int], layer: int, vector: torch.Tensor) -> torch.Tensor:
    """Logits ``(seq, vocab)`` with ``vector`` added to block ``layer``'s output at every position."""
    def hook(_m: torch.nn.Module, _i: object, o: object) -> object:
        if isinstance(o, tuple):
            return (o[0] + vector, *o[1:])
        return o + vector  # type: ignore[operator]

    handle = decoder_layers(model)[layer].register_forward_hook(hook)
    try:
        with torch.no_grad():
            return model(torch.tensor([list(ids)])).logits[0]
    finally:
        handle.remove()


def assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Each vector (last axis) within ``ATOL + RTOL * max|expected vector|``.

    float32 rounding error scales with the largest entry that a norm or matmul mixes in, not with
    each element, so the relative part uses the vector's infinity norm.
    """
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = expected.abs().amax(dim=-1, keepdim=True)
    excess = (actual - expected).abs() - (ATOL + RTOL * scale)
    assert excess.max().item() <= 0, f"max |diff| {(actual - expected).abs().max().item():.3g} beyond tolerance"
