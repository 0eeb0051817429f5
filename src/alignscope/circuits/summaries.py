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
    >>> s["peak_layer"], s["n_flips"]
    (1, 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from alignscope.stats import gini, top_k_concentration


def effect_summary(effect: torch.Tensor, *, target_metric: float, labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Summary statistics of one effect map (see the module docstring).

    Args:
        effect: ``(n_layers, n_cols)`` effects; a 3-D map is summed over its last axis first.
        target_metric: metric of the unpatched run the patches were written into.
        labels: optional names of the columns (tokens or heads) for ``peak_label``.

    Returns:
        A flat dict of JSON-ready numbers.
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
    return {
        "peak_layer": layer,
        "peak_col": col,
        "peak_label": None if labels is None or col >= len(labels) else str(labels[col]),
        "peak_effect": float(e[layer, col]),
        "n_flips": flips,
        "n_patches": int(e.numel()),
        "gini_layers": gini(per_layer),
        "top5_concentration": top_k_concentration(e.flatten().tolist(), 5),
    }


def right_aligned_mean(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean of effect maps whose last (position) axes may differ in length, aligned at the last position.

    A position only some maps have is averaged over those maps.
    """
    width = max(m.shape[-1] for m in maps)
    padded = torch.full((len(maps), *maps[0].shape[:-1], width), float("nan"))
    for i, m in enumerate(maps):
        padded[i, ..., width - m.shape[-1]:] = m.detach().float().cpu()
    return padded.nanmean(0)
