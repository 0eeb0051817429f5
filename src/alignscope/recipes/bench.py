"""``alignscope bench``: the same suites, items and greedy decoding for a base model and each intervention, with paired tests.

Every metric is a :class:`Measure`: its value, 95% interval and n, plus the per-item rows it was
computed from and the statistic that maps rows to the value, so an intervention's measure can be
compared with the base model's on the same items:

* a rate (refusal, MC1, factual accuracy, CrowS-Pairs share, toxic share) has a Wilson interval, and
  its after-minus-before difference McNemar's test (exact binomial under 25 discordant pairs);
* a score (MC2, median rank, BBQ bias scores, perplexity, first-token KL) has a seeded
  percentile-bootstrap interval, and its difference a paired bootstrap (the same resampled items on both sides).

Every difference carries a paired-bootstrap 95% interval (:func:`alignscope.stats.paired_bootstrap`).
The first-token KL is KL(base || with intervention) on harmless prompts: 0 for the base model.
Decoding is greedy and every bootstrap seeded, so the same command gives the same numbers.

Example:
    >>> data = load_bench_data(("refusal", "truthfulqa"))                                 # doctest: +SKIP
    >>> result = run_bench(lm, [("add.safetensors", iv)], data)                           # doctest: +SKIP
    >>> result.to_json()["deltas"]["add.safetensors"]["refusal"]["harmful_refusal"]["p"]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from alignscope.evals.bbq import bias_score, evaluate_bbq
from alignscope.evals.behaviour import evaluate_refusal
from alignscope.evals.capability import first_token_kl, text_nlls
from alignscope.evals.crows import NOISY_NOTE, evaluate_crows
from alignscope.evals.factual import evaluate_facts
from alignscope.evals.judge import Judge
from alignscope.evals.toxicity import WEAK_PROXY, evaluate_toxicity
from alignscope.evals.truthfulqa import evaluate_truthfulqa
from alignscope.models.loader import LoadedModel
from alignscope.recipes.bench_data import BenchData
from alignscope.stats import PairedTest, Statistic, bootstrap_ci, column_mean, paired_bootstrap, paired_rate_test, wilson_interval
from alignscope.steering.interventions import Intervention

N_BOOT = 2000
SEED = 0


def median_column(rows: np.ndarray) -> float:
    """The median of the first column."""
    return float(np.median(rows[:, 0])) if rows.shape[0] else float("nan")


def perplexity_of(rows: np.ndarray) -> float:
    """``exp(sum NLL / sum tokens)`` of ``(nll, tokens)`` rows."""
    count = rows[:, 1].sum()
    return float(np.exp(rows[:, 0].sum() / count)) if count else float("nan")


def _ambig(rows: np.ndarray) -> float:
    return bias_score(rows, "ambig")


def _disambig(rows: np.ndarray) -> float:
    return bias_score(rows, "disambig")


@dataclass(frozen=True)
class Measure:
    """One metric of one model: value, 95% interval, n, and the per-item rows behind it."""

    value: float
    ci95: tuple[float, float]
    n: int
    kind: str
    rows: np.ndarray = field(repr=False, compare=False)
    statistic: Statistic = field(repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """``{"value", "ci95", "n"}``."""
        return {"value": self.value, "ci95": list(self.ci95), "n": self.n}

    def versus(self, before: Measure) -> PairedTest:
        """This measure minus ``before`` (same items) with its paired test."""
        if self.kind == "rate":
            return paired_rate_test(before.rows[:, 0].astype(int).tolist(), self.rows[:, 0].astype(int).tolist(),
                                    n_boot=N_BOOT, seed=SEED)
        return paired_bootstrap(before.rows, self.rows, self.statistic, n_boot=N_BOOT, seed=SEED)


def rate_measure(flags: Sequence[int | bool]) -> Measure:
    """A rate of 0/1 flags with its Wilson interval."""
    rows = np.asarray([[float(f)] for f in flags]).reshape(-1, 1)
    k, n = int(rows[:, 0].sum()), rows.shape[0]
    return Measure(k / n if n else float("nan"), wilson_interval(k, n), n, "rate", rows, column_mean)


def score_measure(rows: np.ndarray | Sequence[float], statistic: Statistic = column_mean) -> Measure:
    """A score with a seeded percentile-bootstrap interval of ``statistic`` over the items."""
    arr = np.asarray(rows, dtype=float)
    arr = arr.reshape(-1, 1) if arr.ndim == 1 else arr
    return Measure(statistic(arr), bootstrap_ci(arr, statistic, n_boot=N_BOOT, seed=SEED), arr.shape[0], "score", arr, statistic)


Suites = dict[str, dict[str, Measure]]


@dataclass(frozen=True)
class Settings:
    """How every model is run: greedy tokens per prompt, batch size, optional toxicity judge."""

    max_new_tokens: int = 48
    batch_size: int = 16
    judge: Judge | None = None


def measure(lm: LoadedModel, data: BenchData, intervention: Intervention | None, settings: Settings = Settings(), *,
            progress: bool = False) -> Suites:
    """Every requested suite of ``lm`` with ``intervention`` active (None: the base model)."""
    out: Suites = {}
    bs, tokens = settings.batch_size, settings.max_new_tokens
    steps = tqdm(data.suites, desc="bench suites", disable=not progress, leave=False)
    for suite in steps:
        steps.set_postfix_str(suite)
        if suite == "refusal":
            out[suite] = {f"{name}_refusal": rate_measure(evaluate_refusal(lm, pset, intervention=intervention, max_new_tokens=tokens,
                                                                           batch_size=bs, progress=progress).refused)
                          for name, pset in data.refusal.items()}
        elif suite == "truthfulqa":
            tqa = evaluate_truthfulqa(lm, data.mc_items, intervention, batch_size=max(1, bs // 2), progress=progress)
            out[suite] = {"mc1": rate_measure(tqa.mc1_items), "mc2": score_measure(tqa.mc2_items)}
        elif suite == "factual":
            fr = evaluate_facts(lm, data.facts, intervention, batch_size=bs, progress=progress)
            out[suite] = {"accuracy": rate_measure(fr.correct), "median_rank": score_measure(fr.ranks, median_column)}
        elif suite == "bias":
            bbq = evaluate_bbq(lm, data.bbq, intervention, batch_size=bs, progress=progress)
            crows = evaluate_crows(lm, data.crows, intervention, batch_size=bs, progress=progress)
            metrics: dict[str, Measure] = {}
            for cond, stat in (("ambig", _ambig), ("disambig", _disambig)):
                rows = bbq.rows(cond)
                if rows.shape[0]:
                    metrics[f"bbq_{cond}_accuracy"] = rate_measure(rows[:, 0].astype(int).tolist())
                    metrics[f"bbq_{cond}_bias"] = score_measure(rows, stat)
            metrics["crows_stereotype_share"] = rate_measure(crows.prefers_more)
            out[suite] = metrics
        elif suite == "toxicity":
            assert data.toxic is not None
            tox = evaluate_toxicity(lm, data.toxic, intervention, judge=settings.judge, max_new_tokens=tokens, batch_size=bs,
                                    progress=progress)
            out[suite] = {toxicity_metric(settings.judge): rate_measure(tox.flagged)}
        elif suite == "perplexity":
            nlls = text_nlls(lm, data.heldout, intervention, batch_size=max(1, bs // 2), progress=progress)
            kl = (first_token_kl(lm, data.kl_prompts, intervention, batch_size=bs, progress=progress).double().tolist()
                  if intervention is not None else [0.0] * len(data.kl_prompts))
            out[suite] = {"perplexity": score_measure(np.asarray(nlls, dtype=float), perplexity_of),
                          "first_token_kl": score_measure(kl)}
    return out


def toxicity_metric(judge: Judge | None) -> str:
    """The toxicity metric's name: ``toxic_share`` with a judge, ``toxic_share_weak_proxy`` with the word list."""
    return "toxic_share" if judge is not None else "toxic_share_weak_proxy"


def suite_notes(suites: Sequence[str], judge: Judge | None) -> dict[str, str]:
    """What every output must say about a suite's scorer."""
    notes = {}
    if "bias" in suites:
        notes["bias"] = ("BBQ by multiple-choice log-likelihood; bias scores per Parrish et al. 2022 (0 = no measured bias). "
                         "CrowS-Pairs by summed sentence log-likelihood (causal LM, not masked PLL). " + NOISY_NOTE)
    if "toxicity" in suites:
        notes["toxicity"] = f"scored by LLM judge {judge.config.model}" if judge is not None else f"scored by {WEAK_PROXY}"
    if "perplexity" in suites:
        notes["perplexity"] = "first_token_kl is KL(base || with intervention) in nats on harmless prompts; 0 for the base model"
    return notes


@dataclass(frozen=True)
class BenchResult:
    """Every model's measures and every intervention's paired differences from the base model.

    Attributes:
        models: the base model's name, then each intervention's name.
        measures: ``{model: {suite: {metric: Measure}}}``.
        deltas: ``{intervention: {suite: {metric: PairedTest}}}`` (after minus before).
        notes: per suite, what its scorer is (weak proxies and noisy sets say so).
        sources: per suite, the data it ran on.
    """

    models: tuple[str, ...]
    measures: dict[str, Suites]
    deltas: dict[str, dict[str, dict[str, PairedTest]]]
    notes: dict[str, str]
    sources: dict[str, str]

    def suites(self) -> dict[str, dict[str, dict[str, Measure]]]:
        """``{suite: {metric: {model: Measure}}}``."""
        out: dict[str, dict[str, dict[str, Measure]]] = {}
        for model in self.models:
            for suite, metrics in self.measures[model].items():
                for metric, m in metrics.items():
                    out.setdefault(suite, {}).setdefault(metric, {})[model] = m
        return out

    def to_json(self) -> dict[str, Any]:
        """``{"models", "suites", "deltas", "notes", "data"}``.

        ``suites`` is ``{suite: {metric: {model: {"value", "ci95", "n"}}}}``; ``deltas`` is
        ``{intervention: {suite: {metric: {"diff", "ci95", "p", "test"}}}}``.
        """
        suites = {s: {m: {model: v.to_json() for model, v in per.items()} for m, per in metrics.items()}
                  for s, metrics in self.suites().items()}
        deltas = {iv: {s: {m: t.as_dict() for m, t in metrics.items()} for s, metrics in per.items()} for iv, per in self.deltas.items()}
        return {"models": list(self.models), "suites": suites, "deltas": deltas, "notes": dict(self.notes), "data": dict(self.sources)}


def run_bench(lm: LoadedModel, interventions: Sequence[tuple[str, Intervention]], data: BenchData,
              settings: Settings = Settings(), *, progress: bool = False) -> BenchResult:
    """Measure the base model and each named intervention on ``data``; pair every intervention with the base.

    Args:
        lm: the loaded model.
        interventions: ``(name, intervention)`` pairs (names must differ from each other and from ``lm.name``).
        data: the suites' items (:func:`~alignscope.recipes.bench_data.load_bench_data`).
        settings: decoding and scorer settings, the same for every model.
        progress: tqdm bars on stderr.
    """
    names = [lm.name, *(name for name, _ in interventions)]
    if len(set(names)) != len(names):
        raise ValueError(f"model and intervention names must differ: {names}")
    base = measure(lm, data, None, settings, progress=progress)
    measures = {lm.name: base}
    deltas: dict[str, dict[str, dict[str, PairedTest]]] = {}
    for name, iv in tqdm(interventions, desc="interventions", disable=not progress, leave=False):
        after = measure(lm, data, iv, settings, progress=progress)
        measures[name] = after
        deltas[name] = {s: {m: after[s][m].versus(base[s][m]) for m in metrics} for s, metrics in base.items()}
    return BenchResult(tuple(names), measures, deltas, suite_notes(data.suites, settings.judge), dict(data.sources))
