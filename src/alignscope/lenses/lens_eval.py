"""Exact evaluation of lenses: per-layer KL from the model's final distribution, full vocabulary.

``KL(final || lens)`` at every position of every chunk, averaged per layer, for the logit lens
and (when given) a tuned lens, from the same frozen forward passes.

Example:
    >>> ev = evaluate_lenses(lm, chunks, lens)             # doctest: +SKIP
    >>> ev.ratio()                                         # mean tuned KL / mean logit-lens KL
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from alignscope.lenses.logit_lens import resid_posts
from alignscope.lenses.tuned_lens import TunedLens
from alignscope.lenses.unembed import Unembedder
from alignscope.metrics import kl_divergence
from alignscope.models.loader import LoadedModel


@dataclass(frozen=True)
class LensEval:
    """Per-layer mean KL (nats) to the final distribution.

    Attributes:
        kl_logit_lens: ``n_layers`` values (the last is 0: the read-out of the last block is the output).
        kl_tuned_lens: likewise for the tuned lens, or None.
        n_tokens: positions averaged over.
    """

    kl_logit_lens: list[float]
    kl_tuned_lens: list[float] | None
    n_tokens: int

    def ratio(self, skip_first: bool = False) -> float:
        """Mean tuned-lens KL over mean logit-lens KL across layers ``0 .. n-2`` (optionally from 1)."""
        if self.kl_tuned_lens is None:
            return float("nan")
        lo = 1 if skip_first else 0
        logit = sum(self.kl_logit_lens[lo:-1])
        return sum(self.kl_tuned_lens[lo:-1]) / logit if logit else float("nan")

    def to_json(self) -> dict[str, Any]:
        """The ``alignscope tuned-lens eval --json`` figures."""
        return {"kl_logit_lens": self.kl_logit_lens, "kl_tuned_lens": self.kl_tuned_lens, "n_tokens": self.n_tokens,
                "mean_kl_logit_lens": _mean(self.kl_logit_lens[:-1]),
                "mean_kl_tuned_lens": None if self.kl_tuned_lens is None else _mean(self.kl_tuned_lens[:-1]),
                "ratio": self.ratio(), "ratio_without_layer0": self.ratio(skip_first=True)}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def kl_per_layer(
    logits: Float[torch.Tensor, "layers tokens vocab"], target: Float[torch.Tensor, "tokens vocab"],
) -> Float[torch.Tensor, " layers"]:
    """Summed (not averaged) over tokens ``KL(softmax(target) || softmax(logits))`` per layer, float32."""
    return kl_divergence(target, logits, dtype=torch.float32).sum(-1)


def evaluate_lenses(
    lm: LoadedModel, chunks: Int[torch.Tensor, "n seq"], lens: TunedLens | None = None, *,
    batch_seqs: int = 4, token_block: int = 64, progress: bool = False,
) -> LensEval:
    """Exact per-layer KL of the logit lens (and ``lens``) on token chunks."""
    ue = Unembedder.from_model(lm)
    n_layers = lm.n_layers
    tot_logit = torch.zeros(n_layers, dtype=torch.float64)
    tot_tuned = torch.zeros(n_layers, dtype=torch.float64)
    n_tok = 0
    for start in tqdm(range(0, chunks.shape[0], batch_seqs), desc="lens eval", disable=not progress):
        resid, logits = resid_posts(lm, chunks[start:start + batch_seqs])
        resid = resid.reshape(n_layers, -1, resid.shape[-1])
        logits = logits.reshape(-1, logits.shape[-1])
        with torch.no_grad():
            for lo in range(0, logits.shape[0], token_block):
                block = slice(lo, lo + token_block)
                tot_logit += kl_per_layer(ue(resid[:, block]), logits[block]).double().cpu()
                if lens is not None:
                    tot_tuned += kl_per_layer(ue(lens.translate(resid[:, block])), logits[block]).double().cpu()
        n_tok += logits.shape[0]
    return LensEval((tot_logit / n_tok).tolist(), None if lens is None else (tot_tuned / n_tok).tolist(), n_tok)
