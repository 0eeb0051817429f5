"""Run a circuits analysis over a set of prompts: what the ``patch``, ``trace`` and ``ablate`` commands do.

Each function tokenises and checks every item first (so a bad pair fails before any compute),
runs the analysis per item, and returns the per-item results with their summaries and the mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from alignscope.circuits.ablation import AblationResult, Component, ablate, component_effects, layer_components, rank_components
from alignscope.circuits.attribution import attribution_patching
from alignscope.circuits.edges import EdgeAttribution, edge_attribution
from alignscope.circuits.pairs import EncodedPair, PromptPair, TraceItem, encode_pair
from alignscope.circuits.patching import PatchingResult, activation_patching, mean_result
from alignscope.circuits.summaries import PairSummary, TraceSummary, effect_summary, right_aligned_mean
from alignscope.circuits.tracing import KINDS, TraceResult, causal_trace
from alignscope.metrics import logit_diff_metric
from alignscope.models.loader import LoadedModel


def encode_all(lm: LoadedModel, pairs: Sequence[PromptPair], *, chat: bool) -> list[EncodedPair]:
    """Tokenise and check every pair; errors name the pair (its id or its 1-based index)."""
    return [encode_pair(lm.tokenizer, p, chat=chat, where=f"pair {p.id or i + 1}") for i, p in enumerate(pairs)]


def metric_name(lm: LoadedModel, enc: EncodedPair) -> str:
    """Readable name of the answer-minus-foil metric."""
    a, f = lm.tokenizer.decode([enc.answer_id]), lm.tokenizer.decode([enc.foil_id])
    return f"logit_diff({a!r} - {f!r})"


@dataclass(frozen=True)
class PatchRun:
    """Per-pair patching results, their summaries and their mean (plus edges when asked)."""

    model: str
    pairs: list[EncodedPair]
    results: list[PatchingResult]
    mean: PatchingResult
    summaries: list[PairSummary]
    metric: str
    edges: EdgeAttribution | None = None


def run_patch(lm: LoadedModel, pairs: Sequence[PromptPair], *, site: str = "resid_pre", method: str = "activation",
              ig_steps: int = 5, direction: str = "denoise", per_position: bool = False, chat: bool = False,
              progress: bool = False, edges: bool = False) -> PatchRun:
    """Activation (exact) or attribution patching of every pair; see :mod:`alignscope.circuits.patching`."""
    encoded = encode_all(lm, pairs, chat=chat)
    results = []
    for enc in encoded:
        metric = logit_diff_metric(enc.answer_id, enc.foil_id)
        if method == "activation":
            res = activation_patching(lm, enc.clean_ids, enc.corrupt_ids, component=site, metric=metric, direction=direction,
                                      progress=progress, per_position=per_position)
        else:
            res = attribution_patching(lm, enc.clean_ids, enc.corrupt_ids, component=site, metric=metric, direction=direction,
                                       ig_steps=ig_steps, per_position=per_position)
        results.append(res)
    summaries = [_pair_summary(enc, res) for enc, res in zip(encoded, results, strict=True)]
    edge_attr = None
    if edges:
        first = encoded[0]
        edge_attr = edge_attribution(lm, first.clean_ids, first.corrupt_ids, metric=logit_diff_metric(first.answer_id, first.foil_id),
                                     ig_steps=max(ig_steps, 1))
    return PatchRun(lm.name, encoded, results, mean_result(results), summaries, metric_name(lm, encoded[0]), edge_attr)


def _pair_summary(enc: EncodedPair, res: PatchingResult) -> PairSummary:
    labels = res.tokens if res.component != "head" else [f"H{h}" for h in range(res.effect.shape[1])]
    p = enc.pair
    return PairSummary(p.id, p.clean, p.corrupt, p.answer, p.foil, res.clean_metric, res.corrupt_metric,
                       effect_summary(res.effect, target_metric=res.target_metric, labels=labels), res.seconds)


@dataclass(frozen=True)
class TraceRun:
    """Per-prompt causal traces and their summaries."""

    model: str
    items: list[TraceItem]
    results: list[TraceResult]
    summaries: list[TraceSummary]

    def mean_effects(self) -> dict[str, Any]:
        """Kind -> mean indirect-effect map over prompts (positions aligned at the last token)."""
        return {k: right_aligned_mean([r.effects[k] for r in self.results]) for k in self.results[0].effects}

    def mean_json(self) -> dict[str, Any]:
        """The ``alignscope trace --json`` payload: one prompt's trace, or the mean over prompts."""
        first = self.results[0]
        if len(self.results) == 1:
            return first.to_json()
        n = len(self.results)
        same = all(r.tokens == first.tokens for r in self.results)
        width = max(len(r.tokens) for r in self.results)
        return {
            "site": [KINDS[k] for k in first.effects], "method": "causal_tracing",
            "tokens": first.tokens if same else [f"{i - width}" for i in range(width)], "metric": first.metric,
            "effect": {KINDS[k]: v.tolist() for k, v in self.mean_effects().items()},
            "clean_metric": sum(r.clean_metric for r in self.results) / n,
            "corrupt_metric": sum(r.corrupt_metric for r in self.results) / n, "window": first.window,
            "resid_window": first.resid_window, "samples": first.samples, "seconds": round(sum(r.seconds for r in self.results), 4),
        }


def run_trace(lm: LoadedModel, items: Sequence[TraceItem], *, kinds: Sequence[str] = ("resid", "attn", "mlp"),
              noise: float = 3.0, seed: int = 0, samples: int = 1, window: int = 10, resid_window: int = 1,
              chat: bool = False, progress: bool = False) -> TraceRun:
    """Causal tracing of every item; see :mod:`alignscope.circuits.tracing`."""
    results: list[TraceResult] = []
    summaries: list[TraceSummary] = []
    for i, item in enumerate(items):
        res = causal_trace(lm, item.prompt, item.subject, answer=item.answer, foil=item.foil, chat=chat, noise=noise, seed=seed,
                           samples=samples, window=window, resid_window=resid_window, kinds=kinds, progress=progress)
        results.append(res)
        for kind, eff in res.effects.items():
            summary = effect_summary(eff, target_metric=res.corrupt_metric, labels=res.tokens)
            if res.metric != "logit_diff":
                summary = replace(summary, n_flips=None)  # a choice flip needs a logit difference, not a probability
            summaries.append(TraceSummary(item.id or str(i + 1), item.prompt, item.subject, kind, res.answer, res.metric,
                                          res.clean_metric, res.corrupt_metric, summary, res.seconds))
    return TraceRun(lm.name, list(items), results, summaries)


@dataclass(frozen=True)
class AblationRun:
    """Ranked components and the ablation verification of the top ones."""

    model: str
    site: str
    pairs: list[EncodedPair]
    ranked: list[tuple[Component, float]]
    result: AblationResult
    rank_seconds: float

    def to_json(self) -> dict[str, Any]:
        """The ``alignscope ablate --json`` payload."""
        return {"site": self.site, **self.result.to_json(), "n_pairs": len(self.pairs),
                "ranking": "activation patching (denoise), mean over pairs",
                "seconds": round(self.result.seconds + self.rank_seconds, 4)}


def run_ablation(lm: LoadedModel, pairs: Sequence[PromptPair], *, site: str = "head", per_position: bool = False,
                 method: str = "mean", k: int = 10, permutations: int = 200, seed: int = 0, chat: bool = False,
                 progress: bool = False) -> AblationRun:
    """Rank components by activation patching (mean over pairs), then verify the top ``k`` by ablation."""
    import time

    encoded = encode_all(lm, pairs, chat=chat)
    start = time.perf_counter()
    if per_position and site != "head":
        results = [activation_patching(lm, e.clean_ids, e.corrupt_ids, component=site,
                                       metric=logit_diff_metric(e.answer_id, e.foil_id), progress=progress) for e in encoded]
        ranked = rank_components(mean_result(results))
    else:
        comps = layer_components(lm, site)
        scores = component_effects(lm, encoded, comps)
        order = np.argsort(-np.asarray(scores), kind="stable")
        ranked = [(comps[i], float(scores[i])) for i in order]
    rank_seconds = time.perf_counter() - start
    result = ablate(lm, encoded, ranked, method=method, k_max=k, permutations=permutations, seed=seed, progress=progress)
    return AblationRun(lm.name, site, encoded, ranked, result, rank_seconds)
