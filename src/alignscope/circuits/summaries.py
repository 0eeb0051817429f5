"""Per-prompt summaries of an effect map: where the effect peaks and how concentrated it is.

For an effect map ``(n_layers, n_cols)`` (positions or heads) and the unpatched target run's
metric ``m0`` (a logit difference: > 0 means the model prefers the answer):

* ``peak_layer`` / ``peak_col`` / ``peak_effect``: the entry with the largest ``|effect|``;
* ``n_flips``: patches after which the model's choice flips, i.e. ``sign(m0 + effect)`` differs
  from ``sign(m0)`` (out of ``n_patches``);
* ``gini_layers``: Gini coefficient of the per-layer total ``|effect|`` (0: spread evenly over
  layers, near 1: all in one layer);
* ``top5_concentration``: share of the total ``|effect|`` held by the 5 largest entries.

Example:
    >>> import torch
    >>> s = effect_summary(torch.tensor([[0.0, 1.0], [3.0, 0.0]]), target_metric=-2.0)
    >>> s.peak_layer, s.n_flips
    (1, 1)

:class:`PairSummary` (``patch``) and :class:`TraceSummary` (``trace``) are the per-item rows the
circuits runners return; their ``to_json()`` is a row of ``summary.csv`` / ``trace_summary.csv``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from alignscope.stats import gini, top_k_concentration


@dataclass(frozen=True)
class EffectSummary:
    """Where one effect map peaks and how concentrated it is (see the module docstring).

    ``n_flips`` is None where a choice flip has no meaning (a probability metric).
    """

    peak_layer: int
    peak_col: int
    peak_label: str | None
    peak_effect: float
    n_flips: int | None
    n_patches: int
    gini_layers: float
    top5_concentration: float

    def to_json(self) -> dict[str, Any]:
        """The flat JSON-ready fields, in declaration order."""
        return {"peak_layer": self.peak_layer, "peak_col": self.peak_col, "peak_label": self.peak_label,
                "peak_effect": self.peak_effect, "n_flips": self.n_flips, "n_patches": self.n_patches,
                "gini_layers": self.gini_layers, "top5_concentration": self.top5_concentration}


@dataclass(frozen=True)
class PairSummary:
    """One prompt pair's patching summary: the pair, its clean and corrupt metrics, the :class:`EffectSummary`, the sweep's time."""

    id: str | None
    clean: str
    corrupt: str
    answer: str
    foil: str
    clean_metric: float
    corrupt_metric: float
    effect: EffectSummary
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """A ``summary.csv`` row: the pair's fields, the metrics, the effect summary's fields, ``seconds``."""
        return {"id": self.id, "clean": self.clean, "corrupt": self.corrupt, "answer": self.answer, "foil": self.foil,
                "clean_metric": self.clean_metric, "corrupt_metric": self.corrupt_metric, **self.effect.to_json(),
                "seconds": self.seconds}


@dataclass(frozen=True)
class TraceSummary:
    """One prompt's causal-tracing summary for one kind (``resid``, ``attn``, ``mlp``)."""

    id: str
    prompt: str
    subject: str
    kind: str
    answer: str
    metric: str
    clean_metric: float
    corrupt_metric: float
    effect: EffectSummary
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """A ``trace_summary.csv`` row: the prompt, kind, answer and metrics, the effect summary's fields, ``seconds``."""
        return {"id": self.id, "prompt": self.prompt, "subject": self.subject, "kind": self.kind, "answer": self.answer,
                "metric": self.metric, "clean_metric": self.clean_metric, "corrupt_metric": self.corrupt_metric,
                **self.effect.to_json(), "seconds": self.seconds}


def effect_summary(effect: torch.Tensor, *, target_metric: float, labels: Sequence[str] | None = None) -> EffectSummary:
    """Summary statistics of one effect map (see the module docstring).

    Args:
        effect: ``(n_layers, n_cols)`` effects; a 3-D map is summed over its last axis first.
        target_metric: metric of the unpatched run the patches were written into.
        labels: optional names of the columns (tokens or heads) for ``peak_label``.

    Returns:
        An :class:`EffectSummary`.
    """
    e = effect.detach().float().cpu()
    if e.ndim == 3:
        e = e.sum(-1)
    if e.ndim != 2 or e.numel() == 0:
        raise ValueError(f"expected a non-empty (layers, cols) effect map, got shape {tuple(effect.shape)}")
    flat = int(e.abs().flatten().argmax())
    layer, col = divmod(flat, e.shape[1])
    patched = target_metric + e
    flips = int(((patched > 0) != (target_metric > 0)).sum()) if target_metric != 0 else 0
    per_layer = e.abs().sum(1).tolist()
    return EffectSummary(
        peak_layer=layer,
        peak_col=col,
        peak_label=None if labels is None or col >= len(labels) else str(labels[col]),
        peak_effect=float(e[layer, col]),
        n_flips=flips,
        n_patches=int(e.numel()),
        gini_layers=gini(per_layer),
        top5_concentration=top_k_concentration(e.flatten().tolist(), 5),
    )


def right_aligned_mean(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean of effect maps whose last (position) axes may differ in length, aligned at the last position.

    A position only some maps have is averaged over those maps.
    """
    width = max(m.shape[-1] for m in maps)
    padded = torch.full((len(maps), *maps[0].shape[:-1], width), float("nan"))
    for i, m in enumerate(maps):
        padded[i, ..., width - m.shape[-1]:] = m.detach().float().cpu()
    return padded.nanmean(0)
