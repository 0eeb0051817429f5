"""Logit lens: read every layer's ``resid_post`` through the model's own final norm and unembedding.

Optionally through a trained tuned lens instead (an affine translator per layer, applied before
the read-out), which is the same code path with ``lens=``.

Example:
    >>> res = logit_lens(lm, "The capital of France is", chat=False, track=[" Paris"])  # doctest: +SKIP
    >>> res.layers[-1].top_tokens[0]                                                    # doctest: +SKIP
    ' Paris'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int

from alignscope.errors import InputError
from alignscope.hooks.read import read
from alignscope.lenses.tuned_lens import TunedLens
from alignscope.lenses.unembed import Unembedder
from alignscope.metrics import single_token_id
from alignscope.models.chat import encode_one
from alignscope.models.loader import LoadedModel
from alignscope.sites import Site


def resid_posts(
    lm: LoadedModel, input_ids: Int[torch.Tensor, "batch seq"], attention_mask: Int[torch.Tensor, "batch seq"] | None = None,
) -> tuple[Float[torch.Tensor, "layers batch seq d"], Float[torch.Tensor, "batch seq vocab"]]:
    """Every layer's ``resid_post`` and the model's final logits for one (left-padded) batch, without grad."""
    sites = [Site(layer, "resid_post") for layer in range(lm.n_layers)]
    got = read(lm, sites, input_ids, attention_mask)
    assert got.logits is not None
    return torch.stack([got.acts[site] for site in sites]), got.logits.detach()


def lens_logits(
    lm: LoadedModel, resid: Float[torch.Tensor, "layers ... d"], lens: TunedLens | None = None,
    unembed: Unembedder | None = None,
) -> Float[torch.Tensor, "layers ... vocab"]:
    """Read-out logits of per-layer residuals: logit lens, or tuned lens when ``lens`` is given."""
    ue = unembed or Unembedder.from_model(lm)
    with torch.no_grad():
        x = resid if lens is None else lens.translate(resid)
        return ue(x)


@dataclass(frozen=True)
class Tracked:
    """One tracked token's read-out at one layer."""

    id: int
    logit: float
    prob: float
    rank: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"id": self.id, "logit": self.logit, "prob": self.prob, "rank": self.rank}


@dataclass(frozen=True)
class LayerReadout:
    """Top tokens and tracked tokens at one layer."""

    layer: int
    top_token_ids: list[int]
    top_tokens: list[str]
    top_probs: list[float]
    tracked: dict[str, Tracked]

    def as_dict(self) -> dict[str, Any]:
        """One entry of the ``layers`` list of ``alignscope lens --json``."""
        return {"layer": self.layer, "top_token_ids": self.top_token_ids, "top_tokens": self.top_tokens,
                "top_probs": self.top_probs, "tracked": {k: v.as_dict() for k, v in self.tracked.items()}}


@dataclass(frozen=True)
class LensResult:
    """A lens read-out of one prompt at one position, layer by layer."""

    tokens: list[str]
    position: int
    kind: str
    layers: list[LayerReadout]

    def trajectory(self, token: str) -> dict[str, list[float]]:
        """``logit``, ``prob`` and ``rank`` of a tracked token across layers."""
        rows = [layer.tracked[token] for layer in self.layers]
        return {"logit": [r.logit for r in rows], "prob": [r.prob for r in rows], "rank": [float(r.rank) for r in rows]}

    def to_json(self) -> dict[str, Any]:
        """The ``alignscope lens --json`` payload."""
        tracked = list(self.layers[0].tracked) if self.layers else []
        return {"lens": self.kind, "position": self.position, "tokens": self.tokens,
                "layers": [layer.as_dict() for layer in self.layers],
                "trajectories": {t: self.trajectory(t) for t in tracked}}


def readout(tokenizer: Any, logits: Float[torch.Tensor, "layers vocab"], track: dict[str, int], top_k: int) -> list[LayerReadout]:
    """Top-k and tracked-token read-outs from per-layer logits at one position."""
    logits = logits.float().cpu()
    probs = torch.softmax(logits, dim=-1)
    top = probs.topk(top_k, dim=-1)
    out = []
    for layer in range(logits.shape[0]):
        ids = top.indices[layer].tolist()
        tracked = {text: Tracked(tid, float(logits[layer, tid]), float(probs[layer, tid]),
                                 int((logits[layer] > logits[layer, tid]).sum()))
                   for text, tid in track.items()}
        out.append(LayerReadout(layer, ids, [tokenizer.decode([i]) for i in ids], top.values[layer].tolist(), tracked))
    return out


def logit_lens(
    lm: LoadedModel, prompt: str | Sequence[int], *, chat: bool = True, track: Sequence[str] = (),
    top_k: int = 5, position: int = -1, lens: TunedLens | None = None,
) -> LensResult:
    """Logit (or tuned) lens of one prompt at ``position``.

    Args:
        lm: the model.
        prompt: text or token ids.
        chat: format text with the chat template.
        track: token texts (each must be one token) whose logit, probability and rank to follow.
        top_k: how many top tokens to list per layer.
        position: index counted from the end.
        lens: a :class:`~alignscope.lenses.tuned_lens.TunedLens`; None for the logit lens.

    Returns:
        :class:`LensResult` with one :class:`LayerReadout` per layer (``resid_post`` of each block).
    """
    if top_k < 1:
        raise InputError(f"top_k must be >= 1, got {top_k}", field="top_k")
    ids = list(prompt) if not isinstance(prompt, str) else encode_one(lm.tokenizer, prompt, chat=chat)[0]
    if not -len(ids) <= position < 0:
        raise InputError(f"position {position} must count from the end, between -{len(ids)} and -1", field="position")
    track_ids = {t: single_token_id(lm.tokenizer, t, field="tokens") for t in track}
    resid, _ = resid_posts(lm, torch.tensor([ids]))
    logits = lens_logits(lm, resid[:, 0, position], lens)
    layers = readout(lm.tokenizer, logits, track_ids, min(top_k, logits.shape[-1]))
    return LensResult([str(t) for t in lm.tokenizer.convert_ids_to_tokens(ids)], position, "logit" if lens is None else "tuned", layers)
