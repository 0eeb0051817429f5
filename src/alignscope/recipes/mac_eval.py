"""Measure a model (with or without an intervention) for the alignment-circuit comparison, and read what a circuit senses.

One row of the comparison table (:class:`CompareRow`) holds, on test splits that training and
selection never saw: refusal rates on harmful, harmless and lookalike prompts (n, rate, Wilson
interval), honest-QA MC1 and MC2 by log-probs, first-token KL against the base model on harmless
prompts, perplexity on held-out text, and steered ``generate`` throughput as a ratio to plain HF
(the same model generating with no hooks at all, on the same prompts and decoding).

:func:`sensor_trace` gives the circuit's per-token axis scores and gates on chosen prompts;
:func:`axis_trajectories` projects the last prompt token's hidden state on the circuit's axes at
every layer, with and without the circuit.

Example:
    >>> row = evaluate_row("module", lm, tests, mc_items, heldout, intervention=circuit, base=base_row)  # doctest: +SKIP
    >>> row.refusal["harmful"].rate                                                                     # doctest: +SKIP
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from alignscope.data.prompts import PromptSet
from alignscope.data.training import MCItem
from alignscope.evals.behaviour import evaluate_refusal
from alignscope.evals.capability import kl_summary, perplexity
from alignscope.evals.generation import generate_detailed
from alignscope.evals.judge import Judge
from alignscope.evals.ratings import RatingSummary, rate_many
from alignscope.evals.truthfulqa import TruthfulQAResult, evaluate_truthfulqa
from alignscope.hooks.read import read
from alignscope.metrics import kl_divergence
from alignscope.models.chat import encode_batch
from alignscope.models.loader import LoadedModel
from alignscope.sites import Site
from alignscope.stats import Rate, rate
from alignscope.steering.circuit import AlignmentCircuit
from alignscope.steering.interventions import Intervention, intervention_scope

LABELS: tuple[str, ...] = ("harmful", "harmless", "lookalike")


@dataclass(frozen=True)
class TestSets:
    """The held-out prompts of the comparison: one prompt set per label in :data:`LABELS`."""

    harmful: PromptSet
    harmless: PromptSet
    lookalike: PromptSet

    def get(self, label: str) -> PromptSet:
        return getattr(self, label)  # type: ignore[no-any-return]


@dataclass
class CompareRow:
    """One model or intervention measured on the test sets (see the module docstring)."""

    name: str
    refusal: dict[str, Rate]
    mc: TruthfulQAResult
    kl: dict[str, Any] | None
    perplexity: float
    throughput_ratio: float | None
    trainable_params: int | None = None
    trainable_pct: float | None = None
    train_seconds: float | None = None
    first_logits: torch.Tensor | None = field(default=None, repr=False)
    generations: dict[str, list[str]] = field(default_factory=dict, repr=False)
    ratings: dict[str, RatingSummary] | None = None

    def to_json(self) -> dict[str, Any]:
        """The row as written to ``comparison.json`` (rates with n and ci95; MC1 and MC2 with intervals)."""
        return {"name": self.name,
                "refusal": {k: r.as_dict() for k, r in self.refusal.items()},
                "mc1": self.mc.mc1.as_dict(), "mc2": self.mc.mc2.to_json(), "kl": self.kl, "perplexity": self.perplexity,
                "throughput_ratio": self.throughput_ratio, "trainable_params": self.trainable_params,
                "trainable_pct": self.trainable_pct, "train_seconds": self.train_seconds,
                "judge": None if self.ratings is None else {label: r.to_json() for label, r in self.ratings.items()}}

    def csv_row(self) -> dict[str, Any]:
        """The flat CSV form of :meth:`to_json`."""
        row: dict[str, Any] = {"name": self.name}
        for label, r in self.refusal.items():
            row[f"refusal_{label}"], row[f"refusal_{label}_n"] = r.rate, r.n
            row[f"refusal_{label}_lo"], row[f"refusal_{label}_hi"] = r.ci95
        row["mc1"], (row["mc1_lo"], row["mc1_hi"]) = self.mc.mc1.rate, self.mc.mc1.ci95
        row["mc2"], (row["mc2_lo"], row["mc2_hi"]) = self.mc.mc2.mean, self.mc.mc2.ci95
        row["kl_mean"] = None if self.kl is None else self.kl["mean"]
        row.update({"perplexity": self.perplexity, "throughput_ratio": self.throughput_ratio,
                    "trainable_params": self.trainable_params, "trainable_pct": self.trainable_pct,
                    "train_seconds": self.train_seconds})
        for label, summary in (self.ratings or {}).items():
            for scale, m in summary.scales.items():
                row[f"judge_{label}_{scale}"] = m.mean
        return row


def throughput_ratio(lm: LoadedModel, prompts: Sequence[str], intervention: Intervention | None, *, max_new_tokens: int = 32,
                     repeats: int = 3) -> float:
    """Tokens per second of ``generate`` with ``intervention`` over the same without it.

    The two conditions alternate for ``repeats`` rounds (so drift on a shared machine hits both)
    and the ratio is of the median rates.
    """
    if intervention is None:
        return 1.0
    rates: dict[str, list[float]] = {"plain": [], "steered": []}
    for _ in range(repeats):
        for name, iv in (("plain", None), ("steered", intervention)):
            start = time.perf_counter()
            gens = generate_detailed(lm, prompts, max_new_tokens=max_new_tokens, batch_size=len(prompts), intervention=iv)
            rates[name].append(sum(len(t) for t in gens.token_ids) / (time.perf_counter() - start))
    return statistics.median(rates["steered"]) / statistics.median(rates["plain"])


def measure_refusal(lm: LoadedModel, sets: TestSets, *, intervention: Intervention | None = None,
                    base_first_logits: torch.Tensor | None = None, max_new_tokens: int = 48, batch_size: int = 16,
                    progress: bool = False) -> tuple[dict[str, Rate], dict[str, list[str]], torch.Tensor | None, dict[str, Any] | None]:
    """Refusal on every label's prompts (greedy generation) and the first-token KL(base || this) on the harmless ones.

    Returns:
        ``(rates per label, generations per label, harmless next-token logits, KL summary or None without
        base_first_logits)``.
    """
    refusal: dict[str, Rate] = {}
    gens: dict[str, list[str]] = {}
    first = None
    for label in LABELS:
        ev = evaluate_refusal(lm, sets.get(label), intervention=intervention, max_new_tokens=max_new_tokens,
                              batch_size=batch_size, progress=progress)
        refusal[label] = rate(sum(ev.refused), len(ev.refused))
        gens[label] = ev.generations
        if label == "harmless":
            first = ev.first_logits
    kl = None
    if base_first_logits is not None and first is not None:
        kl = kl_summary(kl_divergence(base_first_logits, first))
    return refusal, gens, first, kl


def evaluate_row(name: str, lm: LoadedModel, tests: TestSets, mc_items: Sequence[MCItem], heldout: Sequence[str], *,
                 intervention: Intervention | None = None, base_first_logits: torch.Tensor | None = None,
                 max_new_tokens: int = 48, batch_size: int = 16, progress: bool = False) -> CompareRow:
    """Measure ``lm`` with ``intervention`` on every test set (see :class:`CompareRow`).

    ``base_first_logits`` are the base model's next-token logits after each harmless test prompt;
    with them the row carries the first-token KL(base || this) on those prompts.
    """
    refusal, gens, first, kl = measure_refusal(lm, tests, intervention=intervention, base_first_logits=base_first_logits,
                                               max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress)
    mc = evaluate_truthfulqa(lm, list(mc_items), intervention, batch_size=batch_size, progress=progress)
    ppl = perplexity(lm, list(heldout), intervention, batch_size=8, progress=progress)
    speed = throughput_ratio(lm, tests.harmless.texts[:8], intervention) if intervention is not None else None
    return CompareRow(name, refusal, mc, kl, ppl, speed, first_logits=first, generations=gens)


def judge_ratings(judge: Judge, tests: TestSets, generations: dict[str, list[str]], *, progress: bool = False
                  ) -> dict[str, list[dict[str, int] | None]]:
    """The judge's 1-10 helpful/harmless/honest ratings of each test prompt's generation, per label."""
    return {label: rate_many(judge, tests.get(label).texts, generations[label], progress=progress) for label in LABELS}


def sensor_trace(lm: LoadedModel, circuit: AlignmentCircuit, prompts: Sequence[str], *, chat: bool = True
                 ) -> list[dict[str, Any]]:
    """Per prompt: its tokens, the circuit's per-token axis ``scores`` and ``gates`` ``(tokens, n_axes)``, and
    ``nudged_from``, the first token the nudges act on (the last one under scope ``response``; else 0)."""
    out = []
    for prompt in prompts:
        enc = encode_batch(lm.tokenizer, [prompt], chat=chat)
        ids = enc.input_ids.to(lm.device)
        with torch.no_grad(), circuit.apply(lm, record=True) as handle:
            lm.bridge(ids, attention_mask=enc.attention_mask.to(lm.device))
            trace = handle.trace()
        tokens = [lm.tokenizer.decode([t]) for t in enc.input_ids[0].tolist()]
        out.append({"prompt": prompt, "tokens": tokens, "scores": trace["scores"][0], "gates": trace["gates"][0],
                    "nudged_from": len(tokens) - 1 if circuit.scope == "response" else 0})
    return out


def axis_trajectories(lm: LoadedModel, circuit: AlignmentCircuit, prompts: Sequence[str], *, chat: bool = True
                      ) -> dict[str, torch.Tensor]:
    """Mean projection of the last prompt token's ``resid_post`` on each unit axis, per layer: ``{"without", "with"}`` ``(n_layers, n_axes)``."""
    axes = torch.nn.functional.normalize(circuit.net.axes.detach().float().cpu(), dim=-1)
    sites = [Site(layer, "resid_post") for layer in range(lm.n_layers)]
    enc = encode_batch(lm.tokenizer, list(prompts), chat=chat)
    ids, mask = enc.input_ids.to(lm.device), enc.attention_mask.to(lm.device)
    result = {}
    for name, iv in (("without", None), ("with", circuit)):
        with torch.no_grad(), intervention_scope(lm, iv):
            acts = read(lm, sites, ids, mask).acts
        result[name] = torch.stack([acts[s][:, -1].float().cpu() @ axes.T for s in sites]).mean(1)
    return result
