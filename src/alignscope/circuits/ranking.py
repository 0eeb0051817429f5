"""Rank components by their patching effects over pairs: mean, bootstrap interval, causal fraction, layer importance.

Input: an ``(n_pairs, n_components)`` matrix of per-pair effects (positive = the component
supports refusal). Per component: the mean effect, a 95% percentile-bootstrap interval over
pairs (seeded), and the *causal fraction*: the share of pairs where the effect exceeds
``threshold``. Layer importance is the sum of the mean effects of a layer's components.
:func:`first_place_rate` says how often one component ranks first across bootstrap resamples of
the pairs (how sharp a finding is).

Example:
    >>> ranked = rank_components(effects, comps, threshold=0.1, n_boot=1000, seed=0)   # doctest: +SKIP
    >>> ranked[0].component.label                                                    # doctest: +SKIP
    'mlp_out@L14'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alignscope.circuits.ablation import Component
from alignscope.errors import InputError
from alignscope.stats import bootstrap_means, percentile_ci


@dataclass(frozen=True)
class RankedComponent:
    """One component's summary over pairs."""

    component: Component
    effect: float
    ci95: tuple[float, float]
    causal_fraction: float

    def to_json(self) -> dict[str, Any]:
        """The ``top_components`` row: component label, layer, head, effect, ci95, causal_fraction."""
        c = self.component
        return {"component": c.label, "kind": c.component, "layer": c.layer, "head": c.head, "effect": self.effect,
                "ci95": list(self.ci95), "causal_fraction": self.causal_fraction}


def _check(effects: np.ndarray, components: Sequence[Component]) -> None:
    if effects.ndim != 2 or effects.shape[0] == 0 or effects.shape[1] != len(components):
        raise InputError(f"expected effects of shape (n_pairs >= 1, {len(components)}), got {effects.shape}", field="effects")


def rank_components(effects: Any, components: Sequence[Component], *, threshold: float = 0.1, n_boot: int = 1000,
                    seed: int = 0) -> list[RankedComponent]:
    """Every component with its mean effect, interval and causal fraction, largest mean effect first."""
    arr = np.asarray(effects, dtype=float)
    _check(arr, components)
    lo, hi = percentile_ci(bootstrap_means(arr, n_boot, seed))
    mean = arr.mean(axis=0)
    frac = (arr > threshold).mean(axis=0)
    rows = [RankedComponent(c, float(mean[i]), (float(lo[i]), float(hi[i])), float(frac[i])) for i, c in enumerate(components)]
    return sorted(rows, key=lambda r: -r.effect)


def layer_importance(effects: Any, components: Sequence[Component], n_layers: int) -> list[float]:
    """Sum of the mean effects of each layer's components, ``(n_layers,)``."""
    arr = np.asarray(effects, dtype=float)
    _check(arr, components)
    mean = arr.mean(axis=0)
    out = [0.0] * n_layers
    for i, c in enumerate(components):
        out[c.layer] += float(mean[i])
    return out


def first_place_rate(effects: Any, index: int, *, n_boot: int = 1000, seed: int = 0) -> float:
    """Share of bootstrap resamples of the pairs in which component ``index`` has the largest mean effect."""
    arr = np.asarray(effects, dtype=float)
    if arr.ndim != 2 or not 0 <= index < arr.shape[1]:
        raise InputError(f"component index {index} out of range for effects of shape {arr.shape}", field="index")
    boots = bootstrap_means(arr, n_boot, seed)
    return float((boots.argmax(axis=1) == index).mean())
