"""Pooled representations for the AQI: per-layer states pooled over tokens, and a learned weighting over layers.

:func:`layer_states` reads ``resid_post`` (the residual leaving each block) at every layer through the one
activation reader (:func:`alignscope.hooks.read.read`) on the one batch iterator
(:mod:`alignscope.models.batches`), pooling each prompt's *real* tokens as soon as the activation exists:
``mean`` averages them, ``last`` keeps the last one. The run stops after the last block (no final norm or
unembedding).

:func:`fit_layer_weights` learns a weighting over layers (softmax or sparsemax of free per-layer logits) that
maximises the Fisher ratio ``between / within`` dispersion of the two clusters of the weighted sum, on the
TRAIN split only (torch, seeded Adam); :class:`LayerWeights` applies it to other prompts. Each layer is first
scaled by the root mean within-cluster squared norm measured on the train split, so layers of different
norms compete on separation, not size.

Example:
    >>> states = layer_states(lm, ["Hi", "Help me"], token_pool="mean", chat=True)   # doctest: +SKIP
    >>> states.shape                                                               # doctest: +SKIP
    (2, 30, 576)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray
from tqdm.auto import tqdm

from alignscope.errors import InputError
from alignscope.hooks.read import Select, read
from alignscope.models.batches import Batch, encode_prompts, gather, pad_id, padded_batches
from alignscope.models.loader import LoadedModel
from alignscope.sites import Site

TokenPool = Literal["mean", "last"]
Weighting = Literal["softmax", "sparsemax"]
COMPONENT = "resid_post"


def _pool_select(mask: torch.Tensor, token_pool: TokenPool) -> Select:
    def select(_site: object, act: torch.Tensor) -> torch.Tensor:
        act = act.detach().float()
        if token_pool == "last":
            return act[:, -1].cpu()  # left padding: the last column is every prompt's last real token
        m = mask.to(act.device, act.dtype)[:, -act.shape[1]:]
        return (torch.einsum("bs,bsd->bd", m, act) / m.sum(1, keepdim=True)).cpu()
    return select


def layer_states(lm: LoadedModel, texts: Sequence[str], *, token_pool: TokenPool = "mean", chat: bool = True,
                 batch_size: int = 16, progress: bool = False) -> NDArray[np.float64]:
    """Pooled ``resid_post`` of every layer, ``(n_prompts, n_layers, d_model)`` float64, prompts in input order.

    Raises:
        InputError: no texts, or an unknown ``token_pool``.
    """
    if not texts:
        raise InputError("no prompts to read", field="data")
    if token_pool not in ("mean", "last"):
        raise InputError(f"unknown token pooling {token_pool!r}; expected mean or last", field="pool")
    sites = [Site(layer, COMPONENT) for layer in range(lm.n_layers)]

    def states(batch: Batch) -> torch.Tensor:
        got = read(lm, sites, batch.input_ids, batch.attention_mask, stop_at_layer=lm.n_layers,
                   select=_pool_select(batch.attention_mask, token_pool)).acts
        return torch.stack([got[s] for s in sites], dim=1)

    batches = padded_batches(encode_prompts(lm.tokenizer, texts, chat=chat), batch_size, pad_id(lm.tokenizer))
    bar = tqdm(batches, desc="hidden states", unit="batch", disable=not progress, leave=False)
    return gather(len(texts), ((b.index, states(b)) for b in bar)).double().numpy()


def sparsemax(z: torch.Tensor) -> torch.Tensor:
    """Sparsemax of a vector: the Euclidean projection of ``z`` onto the probability simplex (Martins & Astudillo, 2016)."""
    srt, _ = torch.sort(z, descending=True)
    cum = srt.cumsum(0)
    k = torch.arange(1, z.numel() + 1, dtype=z.dtype, device=z.device)
    support = 1 + k * srt > cum
    k_max = int(support.nonzero().max()) + 1
    tau = (cum[k_max - 1] - 1) / k_max
    return torch.clamp(z - tau, min=0)


def _normalise(theta: torch.Tensor, weighting: Weighting) -> torch.Tensor:
    return torch.softmax(theta, 0) if weighting == "softmax" else sparsemax(theta)


def fisher_ratio(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``between / within`` dispersion of two clusters (labels 0/1): ``n0 n1 / n |c0 - c1|^2 / sum_i |x_i - c_{l_i}|^2``."""
    a, b = x[labels == 0], x[labels == 1]
    ca, cb = a.mean(0), b.mean(0)
    between = len(a) * len(b) / len(x) * ((ca - cb) ** 2).sum()
    within = ((a - ca) ** 2).sum() + ((b - cb) ** 2).sum()
    return between / within


@dataclass(frozen=True)
class LayerWeights:
    """A fitted weighting over layers: ``pooled = sum_l weights[l] * scales[l] * states[:, l]``."""

    weights: tuple[float, ...]
    scales: tuple[float, ...]
    weighting: str

    def apply(self, states: NDArray[np.float64]) -> NDArray[np.float64]:
        """``(n, d)`` pooled representations of ``(n, n_layers, d)`` states."""
        if states.shape[1] != len(self.weights):
            raise InputError(f"states have {states.shape[1]} layers, the weights {len(self.weights)}", field="layers")
        coef = np.asarray(self.weights) * np.asarray(self.scales)
        return np.asarray(np.einsum("l,nld->nd", coef, states), dtype=np.float64)


def _layer_scales(states: NDArray[np.float64], labels: NDArray[np.int64]) -> NDArray[np.float64]:
    within = np.zeros(states.shape[1])
    for lab in (0, 1):
        part = states[labels == lab]
        within += ((part - part.mean(0)) ** 2).sum(axis=(0, 2))
    rms = np.sqrt(within / len(states))
    return np.asarray(1.0 / np.where(rms > 0, rms, 1.0), dtype=np.float64)


def fit_layer_weights(states: NDArray[np.float64], labels: Sequence[int], *, weighting: Weighting = "softmax",
                      steps: int = 300, lr: float = 0.05, seed: int = 0) -> LayerWeights:
    """Fit layer weights on TRAIN states ``(n, n_layers, d)`` with labels 0/1, maximising the pooled Fisher ratio.

    Raises:
        InputError: fewer than 2 prompts of either label, or an unknown weighting.
    """
    if weighting not in ("softmax", "sparsemax"):
        raise InputError(f"unknown layer weighting {weighting!r}; expected softmax or sparsemax", field="weighting")
    lab = np.asarray(labels, dtype=np.int64)
    if min(int((lab == 0).sum()), int((lab == 1).sum())) < 2:
        raise InputError("learned pooling needs at least 2 train prompts of each label", field="fit_data")
    scales = _layer_scales(states, lab)
    x = torch.as_tensor(states * scales[None, :, None])
    y = torch.as_tensor(lab)
    gen = torch.Generator().manual_seed(seed)
    theta = (1e-3 * torch.randn(states.shape[1], generator=gen, dtype=torch.float64)).requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = -torch.log(fisher_ratio(torch.einsum("l,nld->nd", _normalise(theta, weighting), x), y))
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    weights = _normalise(theta.detach(), weighting)
    return LayerWeights(tuple(float(w) for w in weights), tuple(float(s) for s in scales), weighting)
