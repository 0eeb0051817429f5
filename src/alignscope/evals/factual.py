"""Factual recall: next-token accuracy and the rank of the answer's first token on subject-relation-object facts.

For each :class:`~alignscope.data.facts.Fact` the prompt is raw text (no chat template), encoded with
the target as lm-eval encodes a continuation (:func:`~alignscope.evals.loglik.encode_pair` of
``prompt`` and ``" " + target``). The model's next-token logits after the prompt rank the target's
first token: rank 1 is the arg-max (ties broken in the token's favour: rank is one plus the number of
tokens with a strictly larger logit), and the fact counts as correct when its rank is 1.

Example:
    >>> result = evaluate_facts(lm, load_facts())   # doctest: +SKIP
    >>> result.accuracy.rate, result.median_rank    # doctest: +SKIP
    (0.41, 2.0)
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from alignscope.data.facts import Fact
from alignscope.errors import InputError
from alignscope.evals.generation import generation_target
from alignscope.evals.loglik import encode_pair
from alignscope.hooks.forward import next_token_logits
from alignscope.models.batches import pad_id, padded_batches
from alignscope.models.loader import LoadedModel
from alignscope.stats import Rate, rate
from alignscope.steering.interventions import Intervention, intervention_scope


@dataclass(frozen=True)
class FactualResult:
    """Per fact: the target's first-token rank (1 = arg-max); accuracy is the share of rank 1."""

    ranks: tuple[int, ...]

    @property
    def correct(self) -> tuple[int, ...]:
        return tuple(int(r == 1) for r in self.ranks)

    @property
    def accuracy(self) -> Rate:
        return rate(sum(self.correct), len(self.ranks))

    @property
    def median_rank(self) -> float:
        return float(statistics.median(self.ranks))


def target_ranks(logits: torch.Tensor, targets: Sequence[int]) -> list[int]:
    """Rank of each row's target token in its ``(n, vocab)`` logits: 1 + the number of strictly larger logits."""
    idx = torch.tensor(list(targets), dtype=torch.long)
    own = logits.gather(-1, idx[:, None])
    return [int(v) + 1 for v in (logits > own).sum(-1).tolist()]


def evaluate_facts(lm: LoadedModel, facts: Sequence[Fact], intervention: Intervention | None = None, *,
                   batch_size: int = 16, progress: bool = False) -> FactualResult:
    """First-token rank of every fact's target after its prompt, with ``intervention`` active.

    Raises:
        InputError: no facts, or a fact whose prompt or target encodes to no token.
    """
    if not facts:
        raise InputError("no facts to score", field="facts")
    encoded = [encode_pair(lm.tokenizer, f.prompt, " " + f.target) for f in facts]
    batches = padded_batches([ctx for ctx, _ in encoded], batch_size, pad_id(lm.tokenizer))
    target = generation_target(lm, intervention)
    with intervention_scope(lm, intervention, target):
        logits = next_token_logits(lm, target, batches, progress=progress)
    return FactualResult(tuple(target_ranks(logits, [cont[0] for _, cont in encoded])))
