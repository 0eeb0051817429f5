"""Summed log-likelihoods of continuations, as lm-evaluation-harness's HFLM computes them, with an optional intervention.

* :func:`encode_pair` is HFLM's ``_encode_pair``: the context's trailing spaces move onto the
  continuation, the context and the whole string are encoded without special tokens, and the
  continuation's tokens are ``whole[len(context_ids):]``.
* :func:`scored_logliks` takes already-encoded ``(context_ids, continuation_ids)`` pairs and returns, per
  pair, the summed log-probability of the continuation tokens after the context and whether every one
  of them is the greedy (arg-max) choice (lm-eval's ``is_greedy``).
* :func:`continuation_logliks` is the same over ``(context, continuation)`` strings.

Sequences run in left-padded batches (:mod:`alignscope.models.batches`) on one hook target chosen as
generation chooses it (:func:`~alignscope.evals.generation.generation_target`), with the intervention
attached for the whole call. TruthfulQA MC, BBQ, CrowS-Pairs and the lm-eval adapter score through here.

Example:
    >>> continuation_logliks(lm, [("The capital of France is", " Paris")])   # doctest: +SKIP
    [-1.93]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from alignscope.errors import InputError
from alignscope.evals.generation import generation_target
from alignscope.hooks.forward import run_batches
from alignscope.models.batches import Batch, pad_id, padded_batches
from alignscope.models.loader import LoadedModel
from alignscope.steering.interventions import Intervention, intervention_scope


def encode_pair(tokenizer: PreTrainedTokenizerBase, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context and continuation token ids as lm-eval's HFLM ``_encode_pair`` makes them.

    Trailing spaces of ``context`` move to the front of ``continuation``; the continuation's tokens
    are those of the whole string after the context's token count.

    Raises:
        InputError: an empty context, or a continuation that adds no token.
    """
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    if not context:
        raise InputError("expected a context with at least one non-space character", field="context")
    whole = list(tokenizer(context + continuation, add_special_tokens=False)["input_ids"])
    context_ids = list(tokenizer(context, add_special_tokens=False)["input_ids"])
    continuation_ids = whole[len(context_ids):]
    if not continuation_ids:
        raise InputError(f"continuation {continuation!r} adds no token to the context", field="continuation")
    return context_ids, continuation_ids


def prefix_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token a continuation with no context is conditioned on: BOS, else EOS (as lm-eval's HFLM ``prefix_token_id``).

    Raises:
        InputError: the tokenizer has neither.
    """
    for tok in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if tok is not None:
            return int(tok)
    raise InputError("the tokenizer has no BOS or EOS token to condition a sentence on", field="tokenizer")


def scored_logliks(
    lm: LoadedModel,
    encoded: Sequence[tuple[Sequence[int], Sequence[int]]],
    intervention: Intervention | None = None,
    *,
    batch_size: int = 8,
    progress: bool = False,
    backend: str = "auto",
    desc: str = "loglik",
) -> list[tuple[float, bool]]:
    """``(summed log-probability, is_greedy)`` of each encoded pair's continuation, in input order.

    Each sequence is context then continuation ids; left padding puts every row's continuation at
    its right end, read off the log-softmax of the logits one position earlier. Nothing is cut to
    the model's context length. ``backend`` is as in :func:`~alignscope.evals.generation.generation_target`.

    Raises:
        InputError: a pair with an empty context or continuation.
    """
    for i, (context, continuation) in enumerate(encoded):
        if not context or not continuation:
            raise InputError(f"pair {i}: expected at least one context and one continuation token", field="encoded")
    batches = padded_batches([[*c, *k] for c, k in encoded], batch_size, pad_id(lm.tokenizer))
    out: list[tuple[float, bool]] = [(math.nan, False)] * len(encoded)
    target = generation_target(lm, intervention, backend)
    with intervention_scope(lm, intervention, target):
        def context_end(batch: Batch) -> torch.Tensor:  # left padding: each context ends just before its continuation
            return torch.tensor([batch.input_ids.shape[1] - len(encoded[i][1]) - 1 for i in batch.index])

        for batch, logits in run_batches(lm, target, batches, desc=desc, progress=progress, prompt_end=context_end):
            for row, i in enumerate(batch.index):
                n = len(encoded[i][1])
                logp = torch.log_softmax(logits[row, -n - 1:-1].double(), dim=-1)
                wanted = batch.input_ids[row, -n:].to(logp.device)
                picked = logp.gather(-1, wanted[:, None])
                out[i] = (float(picked.sum()), bool((logp.argmax(-1) == wanted).all()))
    return out


def continuation_logliks(
    lm: LoadedModel,
    pairs: Sequence[tuple[str, str]],
    intervention: Intervention | None = None,
    *,
    batch_size: int = 8,
    progress: bool = False,
    backend: str = "auto",
) -> list[float]:
    """Summed log-probability of each ``(context, continuation)``'s continuation tokens (:func:`encode_pair`), in input order."""
    encoded = [encode_pair(lm.tokenizer, context, continuation) for context, continuation in pairs]
    return [ll for ll, _ in scored_logliks(lm, encoded, intervention, batch_size=batch_size, progress=progress,
                                           backend=backend, desc="loglik")]
