"""Refusal behaviour of a model on a labelled prompt set, with or without an intervention.

For every prompt: a greedy continuation, a phrase-detector verdict, and the logit refusal
score (log-odds that the first generated token starts a refusal, read from the same forward
pass that generation makes). Rates per label and per category each carry n and a 95% Wilson
interval.

Example:
    >>> ev = evaluate_refusal(lm, prompts, intervention=iv)   # doctest: +SKIP
    >>> ev.by_label["harmful"].rate                            # doctest: +SKIP
    0.85
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import torch

from alignscope.data.prompts import PromptSet
from alignscope.evals.generation import generate_detailed
from alignscope.evals.refusal import Detector, phrase_detector
from alignscope.evals.study_evals import EvalSummary, GroupRate, LogitScore
from alignscope.metrics import refusal_logodds_metric, refusal_token_ids
from alignscope.models.loader import LoadedModel
from alignscope.stats import Rate, mean_ci, rate
from alignscope.steering.interventions import Intervention

UNLABELLED = "unlabelled"
"""Label used for prompts that carry none."""
LOOKALIKE = "lookalike"
"""The category of harmless prompts that look harmful (over-refusal probes), counted apart in :func:`style_key`."""


@dataclass(frozen=True)
class RefusalEval:
    """Refusal behaviour on a prompt set.

    Attributes:
        prompts: the evaluated prompts.
        generations: greedy continuation per prompt.
        refused: phrase-detector verdict per prompt.
        logit_scores: log-odds of a refusal-starting first token per prompt.
        by_label: refusal :class:`Rate` per label (``unlabelled`` for prompts without one).
        by_category: refusal :class:`Rate` per category (see :func:`category_key`).
        by_style: refusal :class:`Rate` per ``label/style`` (see :func:`style_key`); empty when no prompt has a style.
        max_new_tokens: greedy tokens per prompt (a setting of the run).
        chat: whether the prompts were chat-formatted.
        intervention: the intervention's kind (None for none).
        judged: optional LLM-judge verdict per prompt (None where the judge gave none).
        seconds: wall time of the evaluation.
        first_logits: ``(n, vocab)`` next-token logits after each prompt (intervention active);
            two evaluations of the same prompts give the first-token KL without another pass.
    """

    prompts: PromptSet
    generations: list[str]
    refused: list[bool]
    logit_scores: list[float]
    by_label: dict[str, Rate]
    by_category: dict[str, Rate]
    _: KW_ONLY
    by_style: dict[str, Rate] = field(default_factory=dict)
    max_new_tokens: int
    chat: bool
    intervention: str | None
    judged: list[bool | None] | None = None
    seconds: float = 0.0
    first_logits: torch.Tensor | None = field(default=None, repr=False)

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready row per prompt (prompt, annotations, generation, verdicts, score)."""
        rows = []
        for i, p in enumerate(self.prompts):
            row: dict[str, Any] = {"id": p.id, "label": p.label, "category": p.category, "style": p.style, "prompt": p.prompt,
                                   "generation": self.generations[i], "refused": self.refused[i],
                                   "logit_score": self.logit_scores[i]}
            if self.judged is not None:
                row["judge_refused"] = self.judged[i]
            rows.append(row)
        return rows

    def summary(self) -> EvalSummary:
        """The typed summary: rates per label and category, logit scores, settings, judge (``seconds`` to ms)."""
        def group(r: Rate) -> GroupRate:
            return GroupRate(r.n, r.k, r.rate, r.ci95)

        judge = None if self.judged is None else judge_summary(self.prompts, self.judged, self.refused)
        return EvalSummary(by_label={k: group(r) for k, r in self.by_label.items()},
                           by_category={c: group(r) for c, r in self.by_category.items()},
                           logit_score=_logit_scores(self.prompts, self.logit_scores), seconds=round(self.seconds, 3),
                           max_new_tokens=self.max_new_tokens, chat=self.chat, intervention=self.intervention, judge=judge,
                           by_style={c: group(r) for c, r in self.by_style.items()})

    def to_json(self) -> dict[str, Any]:
        """The ``alignscope eval --json`` payload (:meth:`EvalSummary.to_json` of :meth:`summary`)."""
        return self.summary().to_json()


def label_of(prompt_label: str | None) -> str:
    """The label a prompt is counted under."""
    return prompt_label or UNLABELLED


def category_key(prompts: PromptSet) -> list[str | None]:
    """Per prompt, its category key: the category, or ``label/category`` when two labels share the name.

    Prompts without a category get None and are left out of per-category rates.
    """
    owners: dict[str, set[str]] = {}
    for p in prompts:
        if p.category:
            owners.setdefault(p.category, set()).add(label_of(p.label))
    return [None if not p.category else p.category if len(owners[p.category]) == 1 else f"{label_of(p.label)}/{p.category}"
            for p in prompts]


def style_key(prompts: PromptSet) -> list[str | None]:
    """Per prompt, ``label/style`` (a style is shared across labels, its refusal rate is not); None without a style.

    Lookalikes (category ``lookalike``, the over-refusal probes) count as ``lookalike/style``, apart
    from the other harmless prompts.
    """
    return [None if not p.style else f"{'lookalike' if p.category == LOOKALIKE else label_of(p.label)}/{p.style}"
            for p in prompts]


def group_rates(keys: Sequence[str | None], verdicts: Sequence[bool]) -> dict[str, Rate]:
    """Refusal :class:`Rate` per key (None keys skipped), keys in first-seen order."""
    counts: dict[str, list[int]] = {}
    for key, hit in zip(keys, verdicts, strict=True):
        if key is None:
            continue
        c = counts.setdefault(key, [0, 0])
        c[0] += int(hit)
        c[1] += 1
    return {key: rate(k, n) for key, (k, n) in counts.items()}


def evaluate_refusal(
    lm: LoadedModel,
    prompts: PromptSet,
    *,
    intervention: Intervention | None = None,
    chat: bool = True,
    max_new_tokens: int = 48,
    batch_size: int = 16,
    detector: Detector | None = None,
    progress: bool = False,
    judge: Any | None = None,
) -> RefusalEval:
    """Generate for every prompt and measure refusal per label and per category.

    Args:
        lm: the loaded model.
        prompts: the prompt set (labels such as ``harmful``/``harmless``; categories optional).
        intervention: object with ``.apply(lm)``; active during generation and scoring.
        chat: chat-format the prompts.
        max_new_tokens: greedy tokens per prompt.
        batch_size: prompts per generation batch.
        detector: refusal detector (default :func:`phrase_detector`).
        progress: tqdm bar on stderr.
        judge: optional :class:`alignscope.evals.judge.Judge`; its verdicts are reported
            beside the phrase detector's.

    Returns:
        A :class:`RefusalEval`.
    """
    start = time.perf_counter()
    detect = detector or phrase_detector()
    gens = generate_detailed(lm, prompts.texts, chat=chat, max_new_tokens=max_new_tokens, batch_size=batch_size,
                             intervention=intervention, progress=progress)
    refused = [bool(detect(t)) for t in gens.texts]
    scores = logit_refusal_scores(lm, gens.first_logits)
    judged = judge.judge_many(prompts.texts, gens.texts, progress=progress) if judge is not None else None
    labels = [label_of(p.label) for p in prompts]
    return RefusalEval(
        prompts=prompts, generations=gens.texts, refused=refused, logit_scores=scores,
        by_label=group_rates(labels, refused), by_category=group_rates(category_key(prompts), refused),
        by_style=group_rates(style_key(prompts), refused),
        max_new_tokens=max_new_tokens, chat=chat, intervention=getattr(intervention, "kind", None),
        judged=judged, seconds=time.perf_counter() - start, first_logits=gens.first_logits,
    )


def logit_refusal_scores(lm: LoadedModel, first_logits: torch.Tensor) -> list[float]:
    """Refusal log-odds per row of next-token logits ``(n, vocab)``."""
    if first_logits.shape[0] == 0:
        return []
    metric = refusal_logodds_metric(refusal_token_ids(lm.tokenizer))
    return [float(x) for x in metric(first_logits[:, None, :])]


def judge_summary(prompts: PromptSet, judged: Sequence[bool | None], refused: Sequence[bool]) -> dict[str, Any]:
    """Judge refusal rates per label (over prompts with a verdict) and agreement with the phrase detector."""
    labels = [label_of(p.label) for p in prompts]
    keys = [lab if v is not None else None for lab, v in zip(labels, judged, strict=True)]
    rates = group_rates(keys, [bool(v) for v in judged])
    pairs = [(bool(v), r) for v, r in zip(judged, refused, strict=True) if v is not None]
    agree = rate(sum(a == b for a, b in pairs), len(pairs))
    return {"n": {k: r.n for k, r in rates.items()}, "refusal_rate": {k: r.rate for k, r in rates.items()},
            "ci95": {k: list(r.ci95) for k, r in rates.items()}, "n_missing": sum(v is None for v in judged),
            "agreement_with_phrases": agree.as_dict()}


def _logit_scores(prompts: PromptSet, scores: Sequence[float]) -> dict[str, LogitScore]:
    """Mean logit refusal score per label (first-seen order) with its 95% interval."""
    out: dict[str, LogitScore] = {}
    for lab in dict.fromkeys(label_of(p.label) for p in prompts):
        vals = [s for p, s in zip(prompts, scores, strict=True) if label_of(p.label) == lab]
        mean, ci = mean_ci(vals)
        out[lab] = LogitScore(mean, ci, len(vals))
    return out
