"""Ablation verification: does removing the top-ranked components remove the behaviour?

Components (attention or MLP outputs of a layer, at all positions or one; or attention heads)
are ranked by a patching result. On each clean prompt the top ``k`` are ablated together for
``k = 0..K`` (the cumulative curve), and ``N`` random sets of ``K`` components drawn from the
same pool (seeded) give the null distribution for a permutation test.

Ablation methods:

* ``zero``: the component's output is set to 0;
* ``mean``: set to its mean over every token of every prompt in the set (clean and corrupt);
* ``resample``: set to its value on the pair's corrupt prompt (counterfactual resampling).

Statistics, with ``m_i(S)`` the metric (answer-minus-foil logit difference) on prompt ``i`` with
set ``S`` ablated and ``m_i(∅)`` the clean metric:

* curve: mean over prompts of ``m_i(top k)`` with a 95% interval, and of the retained fraction
  ``(m_i(top k) - corrupt_i) / (clean_i - corrupt_i)``;
* effect ``T = mean_i(m_i(top K) - m_i(∅))``; the same ``T_j`` for each random set;
  ``p = (1 + #{j: T_j <= T}) / (N + 1)`` (one-sided: the top set lowers the metric more than
  random sets do); ``z = (T - mean T_j) / sd T_j``.

All ablated runs go through the batched replay engine (prefix reuse from the earliest ablated layer).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from alignscope.circuits.pairs import EncodedPair
from alignscope.circuits.patching import PatchingResult
from alignscope.circuits.replay import ZERO, Patch, RunRecord, check_replay, record_run, replay
from alignscope.errors import InputError
from alignscope.metrics import logit_diff_metric
from alignscope.models.loader import LoadedModel
from alignscope.stats import mean_ci

METHODS = ("zero", "mean", "resample")


@dataclass(frozen=True, order=True)
class Component:
    """One ablatable component: ``component`` at ``layer`` (a head, and/or a position counted from the end)."""

    component: str
    layer: int
    head: int | None = None
    position: int | None = None

    @property
    def label(self) -> str:
        """Short readable id, e.g. ``attn_out@L3``, ``head@L3.H2``, ``mlp_out@L5[-1]``."""
        text = f"{self.component}@L{self.layer}" + ("" if self.head is None else f".H{self.head}")
        return text + ("" if self.position is None else f"[{self.position}]")

    def patch(self, source: str) -> Patch:
        """The replay patch that ablates this component with values from ``source``."""
        return Patch(self.layer, self.component, None if self.position is None else (self.position,), self.head, source)


def rank_components(result: PatchingResult, *, by_abs: bool = False) -> list[tuple[Component, float]]:
    """All components of a patching result, best first (largest effect, or largest ``|effect|``).

    Positions are converted to offsets from the end, so they apply to prompts of other lengths.
    """
    e = result.effect
    items: list[tuple[Component, float]] = []
    for idx in np.ndindex(*e.shape):
        value = float(e[idx])
        if result.component == "head":
            pos = None if len(idx) == 2 else idx[2] - e.shape[2]
            items.append((Component("head", idx[0], idx[1], pos), value))
        else:
            items.append((Component(result.component, idx[0], None, idx[1] - e.shape[1]), value))
    return sorted(items, key=lambda it: -abs(it[1]) if by_abs else -it[1])


def layer_components(lm: LoadedModel, component: str) -> list[Component]:
    """Every whole-layer component (all positions): one per layer, or one per (layer, head)."""
    if component == "head":
        return [Component("head", layer, head) for layer in range(lm.n_layers) for head in range(lm.n_heads)]
    return [Component(component, layer) for layer in range(lm.n_layers)]


def component_effects(lm: LoadedModel, pairs: Sequence[EncodedPair], components: Sequence[Component]) -> list[float]:
    """Mean denoising effect (clean value written into the corrupt run) of each component, over pairs."""
    totals = np.zeros(len(components))
    comps = sorted({c.component for c in components})
    for enc in pairs:
        clean, corrupt = record_run(lm, enc.clean_ids, comps), record_run(lm, enc.corrupt_ids, comps)
        metric = logit_diff_metric(enc.answer_id, enc.foil_id)
        base = float(metric(corrupt.last_logits)[0])
        values = replay(lm, corrupt, [[c.patch("clean")] for c in components], {"clean": clean.acts}, metric)
        totals += values.numpy() - base
    return (totals / max(1, len(pairs))).tolist()


@dataclass(frozen=True)
class AblationResult:
    """Cumulative ablation curve and the permutation test (see the module docstring)."""

    method: str
    components: list[Component]
    scores: list[float]
    per_prompt: torch.Tensor
    clean_metrics: list[float]
    corrupt_metrics: list[float]
    curve: list[dict[str, Any]]
    permutation: dict[str, Any]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (the ``alignscope ablate --json`` payload)."""
        return {
            "method": self.method, "components": [c.label for c in self.components], "scores": self.scores,
            "curve": self.curve, "permutation": self.permutation, "clean_metric": float(np.mean(self.clean_metrics)),
            "corrupt_metric": float(np.mean(self.corrupt_metrics)), "n_prompts": len(self.clean_metrics),
            "seconds": round(self.seconds, 4),
        }


def _mean_sources(records: Sequence[RunRecord], keys: set[tuple[str, int]]) -> dict[tuple[str, int], torch.Tensor]:
    """Per (component, layer): the mean activation over every token of every recorded run."""
    return {key: torch.cat([r.acts[key] for r in records]).mean(0) for key in keys}


def ablate(
    lm: LoadedModel,
    pairs: Sequence[EncodedPair],
    ranked: Sequence[tuple[Component, float]],
    *,
    method: str = "mean",
    k_max: int = 10,
    permutations: int = 200,
    seed: int = 0,
    pool: Sequence[Component] | None = None,
    progress: bool = False,
) -> AblationResult:
    """Ablate the top ``1..k_max`` components cumulatively, and ``permutations`` random sets of ``k_max``.

    Args:
        lm: the loaded model.
        pairs: encoded clean/corrupt pairs; the behaviour is answer-over-foil on the clean prompt.
        ranked: components with scores, best first (e.g. from :func:`rank_components`).
        method: ``zero``, ``mean`` or ``resample``.
        k_max: size of the largest ablated set.
        permutations: number of random sets (bounded to 10,000).
        seed: seed of the random sets.
        pool: components random sets are drawn from (default: every component in ``ranked``).
        progress: progress bar on stderr.

    Returns:
        An :class:`AblationResult`.
    """
    if method not in METHODS:
        raise InputError(f"unknown ablation {method!r}; choose from {', '.join(METHODS)}", field="method")
    if not pairs:
        raise InputError("no prompt pairs to ablate on", field="pairs")
    pool = list(pool) if pool is not None else [c for c, _ in ranked]
    k_max = min(k_max, len(ranked))
    if k_max < 1 or len(pool) < k_max:
        raise InputError(f"need at least {max(k_max, 1)} components to ablate; have {len(ranked)} ranked, {len(pool)} in the pool", field="k")
    if not 0 <= permutations <= 10_000:
        raise InputError("permutations must be between 0 and 10000", field="permutations")
    start = time.perf_counter()
    top = [c for c, _ in ranked[:k_max]]
    rng = np.random.default_rng(seed)
    random_sets = [[pool[i] for i in rng.choice(len(pool), size=k_max, replace=False)] for _ in range(permutations)]
    rows = [[c.patch("v") for c in top[:k]] for k in range(k_max + 1)] + [[c.patch("v") for c in s] for s in random_sets]
    per_prompt, clean_m, corrupt_m = _run_rows(lm, pairs, rows, method, progress)
    curve = _curve(per_prompt[:, : k_max + 1], clean_m, corrupt_m)
    perm = _permutation(per_prompt, k_max, permutations, seed)
    return AblationResult(method, top, [s for _, s in ranked[:k_max]], per_prompt, clean_m, corrupt_m, curve, perm,
                          time.perf_counter() - start)


def _run_rows(lm: LoadedModel, pairs: Sequence[EncodedPair], rows: list[list[Patch]], method: str,
              progress: bool) -> tuple[torch.Tensor, list[float], list[float]]:
    comps = sorted({p.component for row in rows for p in row})
    keys = {(p.component, p.layer) for row in rows for p in row}
    records = [(record_run(lm, e.clean_ids, comps), record_run(lm, e.corrupt_ids, comps)) for e in pairs]
    check_replay(lm, records[0][0])
    means = _mean_sources([r for pair in records for r in pair], keys) if method == "mean" else {}
    out = torch.zeros(len(pairs), len(rows))
    clean_m, corrupt_m = [], []
    for i, (enc, (clean, corrupt)) in enumerate(zip(pairs, records, strict=True)):
        metric = logit_diff_metric(enc.answer_id, enc.foil_id)
        if method == "resample":
            source = corrupt.acts
        elif method == "mean":
            source = {k: v.unsqueeze(0).expand(clean.seq_len, *v.shape) for k, v in means.items()}
        else:
            source = {}
        the_rows = rows if method != "zero" else [[Patch(p.layer, p.component, p.positions, p.head, ZERO) for p in r] for r in rows]
        out[i] = replay(lm, clean, the_rows, {"v": source}, metric, progress=progress)
        clean_m.append(float(metric(clean.last_logits)[0]))
        corrupt_m.append(float(metric(corrupt.last_logits)[0]))
    return out, clean_m, corrupt_m


def _curve(values: torch.Tensor, clean_m: Sequence[float], corrupt_m: Sequence[float]) -> list[dict[str, Any]]:
    clean, corrupt = np.asarray(clean_m), np.asarray(corrupt_m)
    gap = clean - corrupt
    points = []
    for k in range(values.shape[1]):
        v = values[:, k].numpy().astype(float)
        mean, ci = mean_ci(v.tolist())
        ok = np.abs(gap) > 1e-8
        retained = ((v[ok] - corrupt[ok]) / gap[ok]).tolist()
        r_mean, r_ci = mean_ci(retained)
        points.append({"k": k, "metric_mean": mean, "metric_ci95": list(ci), "retained_mean": r_mean,
                       "retained_ci95": list(r_ci), "n": int(v.size)})
    return points


def _permutation(values: torch.Tensor, k_max: int, permutations: int, seed: int) -> dict[str, Any]:
    base = values[:, 0]
    effect = float((values[:, k_max] - base).mean())
    random = (values[:, k_max + 1:] - base.unsqueeze(1)).mean(0).numpy().astype(float)
    out: dict[str, Any] = {"set_size": k_max, "n_permutations": permutations, "seed": seed, "effect": effect}
    if permutations == 0:
        return {**out, "random_mean": None, "random_sd": None, "z": None, "p_value": None}
    sd = float(random.std(ddof=1)) if permutations > 1 else 0.0
    return {**out, "random_mean": float(random.mean()), "random_sd": sd,
            "z": (effect - float(random.mean())) / sd if sd > 0 else None,
            "p_value": float((1 + int((random <= effect).sum())) / (permutations + 1))}
