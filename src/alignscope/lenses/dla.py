"""Direct logit attribution: split ``logit[answer] - logit[foil]`` into what each component wrote.

The residual stream at the read-out position is a sum of parts: the embedding (token plus
position embeddings), every layer's attention output and every layer's MLP output. Freezing the
final norm's scale at its value in the actual run makes the read-out linear, so each part gets a
share of the logit difference, and the shares plus one constant (norm and unembedding biases)
add up to the model's own logit difference.

Attention outputs split further into heads: head ``h`` of layer ``l`` writes ``z[h] @ W_O[h]``,
where ``z`` is the bridge's ``hook_z`` and ``W_O`` the native output projection found through the
architecture registry. Models with a norm after each sublayer (Gemma 2/3) get that norm frozen
too, so heads still add up exactly. Parallel-attention models (Falcon, GPT-NeoX) need nothing
special: their attention and MLP outputs are added to the same residual.

Under an intervention (``with iv.apply(lm):`` around the call) the decomposition is of the steered
forward pass. Components are read after the intervention's hooks, so a write at ``attn_out`` or
``mlp_out`` counts in that component and one at ``resid_pre`` of layer 0 in ``embed``; a write to
the residual stream between components (``resid_pre`` of a later layer, ``resid_post``, a
projection removed, a circuit's nudge) is no component's output. With ``steered=True`` it gets its
own part, ``intervention``: the share of ``final - (embed + sum(attn) + sum(mlp))``, so the parts
still add up to the model's own logit difference.

Example:
    >>> res = direct_logit_attribution(lm, "The capital of France is", answer=" Paris", foil=" Rome", chat=False)  # doctest: +SKIP
    >>> res.logit_diff, res.total()                        # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float

from alignscope.errors import AlignscopeError
from alignscope.hooks.read import read
from alignscope.lenses.unembed import FrozenNorm, Unembedder, freeze_norm, native
from alignscope.metrics import single_token_id
from alignscope.models.chat import encode_one
from alignscope.models.loader import LoadedModel
from alignscope.models.registry import decoder_layers, get_arch, resolve_module
from alignscope.sites import Site


@dataclass(frozen=True)
class ResidualParts:
    """What each component wrote into the residual stream at one position (float32, CPU).

    Attributes:
        embed: ``(d_model,)`` the residual entering block 0.
        attn: ``(n_layers, d_model)`` attention outputs as added to the residual.
        mlp: ``(n_layers, d_model)`` MLP outputs as added to the residual.
        heads: ``(n_layers, n_heads, d_model)`` per-head outputs (through any frozen post-norm).
        head_bias: ``(n_layers, d_model)`` the output projection's bias term, so that
            ``heads.sum(1) + head_bias == attn``.
        final: ``(d_model,)`` the residual leaving the last block (input to the final norm).
        logits: ``(vocab,)`` the model's own logits at the position.
    """

    embed: torch.Tensor
    attn: torch.Tensor
    mlp: torch.Tensor
    heads: torch.Tensor
    head_bias: torch.Tensor
    final: torch.Tensor
    logits: torch.Tensor


@dataclass(frozen=True)
class DLAResult:
    """Direct logit attribution of ``logit[answer] - logit[foil]`` at one position.

    Attributes:
        logit_diff: the model's own logit difference.
        embed: the embedding's share.
        attn: ``(n_layers,)`` each attention layer's share.
        mlp: ``(n_layers,)`` each MLP's share.
        heads: ``(n_layers, n_heads)`` each head's share (they add up to ``attn - head_bias``).
        head_bias: ``(n_layers,)`` the attention output bias' share.
        remainder: the constant from the final norm's and the unembedding's biases.
        intervention: with ``steered``, the share of what no component wrote (an intervention's
            writes to the residual stream); None otherwise.
    """

    logit_diff: float
    embed: float
    attn: torch.Tensor
    mlp: torch.Tensor
    heads: torch.Tensor
    head_bias: torch.Tensor
    remainder: float
    answer_id: int
    foil_id: int
    tokens: list[str] = field(default_factory=list)
    intervention: float | None = None

    def total(self) -> float:
        """Sum of all parts and the remainder (equals :attr:`logit_diff` up to float rounding)."""
        return float(self.embed + self.attn.sum() + self.mlp.sum() + self.remainder + (self.intervention or 0.0))

    def attn_mlp_ratio(self) -> list[float]:
        """Per layer ``|attn| / (|attn| + |mlp|)``: 1 when attention carries the layer, 0 for the MLP."""
        a, m = self.attn.abs(), self.mlp.abs()
        return (a / (a + m).clamp_min(1e-12)).tolist()

    def components(self, by_head: bool = False) -> list[dict[str, Any]]:
        """The ``components`` list of the ``alignscope dla --json`` contract."""
        rows: list[dict[str, Any]] = [{"component": "embed", "layer": None, "head": None, "value": self.embed}]
        for layer in range(self.attn.shape[0]):
            rows.append({"component": "attn", "layer": layer, "head": None, "value": float(self.attn[layer])})
            rows.append({"component": "mlp", "layer": layer, "head": None, "value": float(self.mlp[layer])})
        if by_head:
            for layer in range(self.heads.shape[0]):
                rows.extend({"component": "head", "layer": layer, "head": h, "value": float(self.heads[layer, h])}
                            for h in range(self.heads.shape[1]))
        if self.intervention is not None:
            rows.append({"component": "intervention", "layer": None, "head": None, "value": self.intervention})
        return rows

    def to_json(self, by_head: bool = False) -> dict[str, Any]:
        """JSON-ready payload (``logit_diff``, ``components`` and the checks)."""
        out: dict[str, Any] = {
            "logit_diff": self.logit_diff, "answer_id": self.answer_id, "foil_id": self.foil_id,
            "components": self.components(by_head), "remainder": self.remainder,
            "sum_of_parts": self.total(), "max_abs_error": abs(self.total() - self.logit_diff),
            "attn_mlp_ratio": self.attn_mlp_ratio(), "tokens": self.tokens,
        }
        if by_head:
            out["head_bias"] = self.head_bias.tolist()
        if self.intervention is not None:
            out["intervention"] = self.intervention
        return out


def residual_parts(lm: LoadedModel, ids: Sequence[int], position: int = -1) -> ResidualParts:
    """Run one un-padded prompt and collect each component's write at ``position``.

    Args:
        lm: the model.
        ids: token ids of the prompt.
        position: index counted from the end (``-1``: the last token).
    """
    n = lm.n_layers
    embed, final = Site(0, "resid_pre"), Site(n - 1, "resid_post")
    layers = [(Site(layer, "attn_out"), Site(layer, "mlp_out"), Site(layer, "head")) for layer in range(n)]
    got = read(lm, [embed, final, *(s for trio in layers for s in trio)], torch.tensor([list(ids)]),
               select=lambda _s, act: act[0, position].detach().float())
    grabbed, logits = got.acts, got.logits
    assert logits is not None
    attn = torch.stack([grabbed[a] for a, _, _ in layers])
    heads, head_bias = _split_heads(lm, [grabbed[h] for _, _, h in layers])
    return ResidualParts(
        embed=grabbed[embed], attn=attn, mlp=torch.stack([grabbed[m] for _, m, _ in layers]),
        heads=heads, head_bias=head_bias, final=grabbed[final],
        logits=logits[0, position].detach().float(),
    )


def _split_heads(lm: LoadedModel, zs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head writes ``(n_layers, n_heads, d)`` and bias terms ``(n_layers, d)`` from each layer's ``z``."""
    spec = get_arch(lm.model_type)
    heads, biases = [], []
    for layer, (block, z) in enumerate(zip(decoder_layers(lm.hf_model), zs, strict=True)):
        proj = native(resolve_module(block, spec.attn_out))
        w = proj.weight.detach().float().cpu()  # type: ignore[operator] # Linear: (d_model, H*dh); Conv1D: (H*dh, d_model)
        w_o = w.reshape(z.shape[0], z.shape[1], -1) if spec.conv1d else w.T.reshape(z.shape[0], z.shape[1], -1)
        per_head = torch.einsum("hk,hkd->hd", z.cpu(), w_o)
        bias_t = getattr(proj, "bias", None)
        bias = torch.zeros(per_head.shape[-1]) if bias_t is None else bias_t.detach().float().cpu()
        if spec.post_sublayer_norm:
            post = getattr(lm.bridge.blocks[layer], "ln1_post", None)
            if post is None:
                raise AlignscopeError(f"{lm.model_type} is marked post_sublayer_norm but its bridge block has no ln1_post")
            frozen = freeze_norm(post, per_head.sum(0) + bias).cpu()
            per_head, bias = frozen.linear(per_head), frozen.linear(bias) + frozen.bias
        heads.append(per_head)
        biases.append(bias)
    return torch.stack(heads), torch.stack(biases)


def logit_directions(
    unembed: Unembedder, final: Float[torch.Tensor, " d"], answer_id: int, foil_id: int,
) -> tuple[torch.Tensor, float, FrozenNorm]:
    """The frozen read-out of ``logit[answer] - logit[foil]`` as ``direction · linear(part) + constant``.

    Returns:
        ``(direction (d,), constant, frozen_norm)``: a part ``x`` contributes
        ``direction @ frozen_norm.linear(x)``.
    """
    frozen = freeze_norm(unembed.norm, final.to(unembed.weight.dtype))
    w = unembed.weight.detach().float().cpu()
    b = unembed.bias.detach().float().cpu()
    frozen = frozen.cpu()
    pre = w[[answer_id, foil_id]] @ frozen.apply(final.float().cpu()) + b[[answer_id, foil_id]]
    # A soft-cap c*tanh(x/c) is frozen as a per-token gain cap(x)/x, exact at the run's logits.
    r = unembed.cap(pre) / pre if unembed.softcap is not None else torch.ones(2)
    direction = r[0] * w[answer_id] - r[1] * w[foil_id]
    const = float(direction @ frozen.bias + r[0] * b[answer_id] - r[1] * b[foil_id])
    return direction, const, frozen


def unexplained(parts: ResidualParts) -> torch.Tensor:
    """``final - (embed + sum(attn) + sum(mlp))``: what reached the read-out that no component wrote (an intervention's writes)."""
    return parts.final - parts.embed - parts.attn.sum(0) - parts.mlp.sum(0)


def attribute_parts(parts: ResidualParts, unembed: Unembedder, answer_id: int, foil_id: int, *,
                    steered: bool = False) -> DLAResult:
    """Project collected residual parts onto the frozen answer-minus-foil read-out (``steered``: add the ``intervention`` part)."""
    direction, const, frozen = logit_directions(unembed, parts.final, answer_id, foil_id)

    def share(x: torch.Tensor) -> torch.Tensor:
        return frozen.linear(x) @ direction

    return DLAResult(
        logit_diff=float(parts.logits[answer_id] - parts.logits[foil_id]), embed=float(share(parts.embed)),
        attn=share(parts.attn), mlp=share(parts.mlp), heads=share(parts.heads), head_bias=share(parts.head_bias),
        remainder=const, answer_id=answer_id, foil_id=foil_id,
        intervention=float(share(unexplained(parts))) if steered else None,
    )


def direct_logit_attribution(
    lm: LoadedModel, prompt: str | Sequence[int], answer: str | int, foil: str | int, *,
    chat: bool = True, position: int = -1, steered: bool = False,
) -> DLAResult:
    """Direct logit attribution of ``logit[answer] - logit[foil]`` for one prompt.

    Args:
        lm: the model.
        prompt: text (chat-formatted or raw per ``chat``) or token ids.
        answer: the answer token, as text (must be one token) or an id.
        foil: the foil token, likewise.
        chat: format text with the chat template.
        position: read-out position counted from the end.
        steered: an intervention is attached: report its writes as the ``intervention`` part.

    Returns:
        :class:`DLAResult`; ``result.total()`` equals ``result.logit_diff`` to float rounding.
    """
    ids = list(prompt) if not isinstance(prompt, str) else encode_one(lm.tokenizer, prompt, chat=chat)[0]
    a = answer if isinstance(answer, int) else single_token_id(lm.tokenizer, answer, field="answer")
    f = foil if isinstance(foil, int) else single_token_id(lm.tokenizer, foil, field="foil")
    parts = residual_parts(lm, ids, position)
    res = attribute_parts(parts, Unembedder.from_model(lm), a, f, steered=steered)
    return DLAResult(**{**res.__dict__, "tokens": [str(t) for t in lm.tokenizer.convert_ids_to_tokens(ids)]})
