"""Independent references for steering tests: torch hooks on a FRESH plain HF model (never the bridge's).

Sites map to native modules through the registry: ``resid_pre`` is a forward pre-hook on the
decoder layer's hidden-states input, ``resid_post`` a forward hook on its output, ``attn_out``
and ``mlp_out`` forward hooks on the output projections (on Gemma 2/3, on the post-sublayer
norms, whose outputs are what the sublayers add to the residual), ``resid_mid`` a rewrite of
what attention adds (``edit(pre + a) - pre``). Edits are plain tensor arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from alignscope.models.registry import decoder_layers, get_arch, resolve_module
from tests.reference import assert_close_scaled

Edit = Callable[[torch.Tensor], torch.Tensor]


def _first(o: Any) -> torch.Tensor:
    return o[0] if isinstance(o, tuple) else o


def _replace(o: Any, new: torch.Tensor) -> Any:
    return (new, *o[1:]) if isinstance(o, tuple) else new


def _attach(model: torch.nn.Module, layer: int, component: str, edit: Edit) -> Any:
    block = decoder_layers(model)[layer]
    if component == "resid_pre":
        def pre(_m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if args:
                return (edit(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": edit(kwargs["hidden_states"])}
        return block.register_forward_pre_hook(pre, with_kwargs=True)
    if component == "resid_post":
        return block.register_forward_hook(lambda _m, _i, o: _replace(o, edit(_first(o))))
    spec = get_arch(str(model.config.model_type))
    write = "attn_out" if component == "resid_mid" else component
    path = {"attn_out": spec.attn_out, "mlp_out": spec.mlp_out}[write]
    if spec.post_sublayer_norm:  # Gemma 2/3: what a sublayer writes to the residual is its post-norm's output
        path = {"attn_out": "post_attention_layernorm", "mlp_out": "post_feedforward_layernorm"}[write]
    if component == "resid_mid":
        return _attach_mid(block, resolve_module(block, path), edit)
    return resolve_module(block, path).register_forward_hook(lambda _m, _i, o: _replace(o, edit(_first(o))))


class _Handles:
    def __init__(self, *handles: Any) -> None:
        self.handles = handles

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _attach_mid(block: torch.nn.Module, attn_write: torch.nn.Module, edit: Edit) -> _Handles:
    """``resid_mid = resid_pre + attn_out``: edit it by rewriting what attention adds, ``a' = edit(pre + a) - pre``.

    Independent of the library's in-place write: the residual stream is never touched directly.
    """
    pre: dict[str, torch.Tensor] = {}

    def stash(_m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        pre["x"] = args[0] if args else kwargs["hidden_states"]

    def rewrite(_m: Any, _i: Any, o: Any) -> Any:
        return _replace(o, edit(pre["x"] + _first(o)) - pre["x"])

    return _Handles(block.register_forward_pre_hook(stash, with_kwargs=True), attn_write.register_forward_hook(rewrite))


@contextmanager
def edits(model: torch.nn.Module, sites: Sequence[tuple[int, str, Edit]]) -> Iterator[None]:
    """Apply ``edit`` at each ``(layer, component)`` of a plain model for the ``with`` block."""
    handles = [_attach(model, layer, comp, fn) for layer, comp, fn in sites]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Position ids for a left-padded batch (what the bridge derives from the mask)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def plain_logits(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Logits of a left-padded batch from a plain model."""
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits  # type: ignore[no-any-return]


def capture(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, layer: int, component: str) -> torch.Tensor:
    """``(b, s, d)`` activation of one site in a plain run."""
    got: list[torch.Tensor] = []

    def grab(x: torch.Tensor) -> torch.Tensor:
        got.append(x.detach().clone())
        return x

    with edits(model, [(layer, component, grab)]):
        plain_logits(model, ids, mask)
    return got[0]


def greedy_no_cache(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, steps: int) -> torch.Tensor:
    """Greedy continuation of a left-padded batch, recomputing the whole sequence each step."""
    seq, m = ids.clone(), mask.clone()
    for _ in range(steps):
        nxt = plain_logits(model, seq, m)[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], dim=1)
        m = torch.cat([m, torch.ones_like(nxt)], dim=1)
    return seq[:, ids.shape[1]:]


def project_out(d: torch.Tensor) -> Edit:
    """``x - (x . u) u`` with ``u = d / |d|``."""
    u = d / d.norm()
    return lambda x: x - (x @ u).unsqueeze(-1) * u


def add(v: torch.Tensor, rows: torch.Tensor | None = None) -> Edit:
    """``x + v``, only on ``rows`` (a 0/1 vector over the batch) when given."""
    if rows is None:
        return lambda x: x + v
    return lambda x: x + rows.view(-1, 1, 1).to(x.dtype) * v


def check_cases(lm: Any, model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor,
                cases: Sequence[tuple[Any, Sequence[tuple[int, str, Edit]]]], *, min_change: float = 1e-3, label: str = "") -> None:
    """Each ``(intervention, plain edits)``: bridge logits under the intervention equal the plain model's under
    the hand-written edits (real tokens), the intervention changes something, and no hook stays behind."""
    real = mask.bool()
    with torch.no_grad():
        before = lm.bridge(ids, attention_mask=mask)
    for iv, sites in cases:
        with torch.no_grad(), iv.apply(lm):
            got = lm.bridge(ids, attention_mask=mask)
        with edits(model, sites):
            want = plain_logits(model, ids, mask)
        assert_close_scaled(got[real], want[real])
        assert (got[real] - before[real]).abs().max() > min_change, f"{iv.kind} {label} changed nothing"
        with torch.no_grad():
            assert torch.equal(lm.bridge(ids, attention_mask=mask), before), f"{iv.kind} {label} left a hook behind"
