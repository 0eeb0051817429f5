"""Behaviour metrics on logits, as typed callables built by small factories.

A :data:`Metric` maps final logits ``(batch, seq, vocab)`` (plus the attention mask, for
left-padded batches) to one number per prompt ``(batch,)``. They are differentiable, so
attribution methods can use them too. All read the last real position; with left padding that
is index ``-1``.

Example:
    >>> m = logit_diff_metric(answer_id=5, foil_id=7)      # doctest: +SKIP
    >>> m(logits)                                          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from jaxtyping import Float
from transformers import PreTrainedTokenizerBase

from alignscope.errors import InputError

Metric = Callable[[Float[torch.Tensor, "batch seq vocab"]], Float[torch.Tensor, " batch"]]

DEFAULT_REFUSAL_STARTS: tuple[str, ...] = (
    "I'm sorry", "I am sorry", "I apologize", "I cannot", "I can't", "I won't", "I will not", "I must",
    "Sorry", "Unfortunately", "As an AI", "I'm not able", "I am not able", "I'm unable", "No,",
)
"""Opening phrases of refusals; the first token of each (with and without a leading space) is scored."""


def logit_diff_metric(answer_id: int, foil_id: int, position: int = -1) -> Metric:
    """``logit[answer] - logit[foil]`` at ``position`` (default: the last token)."""

    def metric(logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, position]
        return last[:, answer_id] - last[:, foil_id]

    return metric


def refusal_token_ids(tokenizer: PreTrainedTokenizerBase, phrases: Iterable[str] = DEFAULT_REFUSAL_STARTS) -> list[int]:
    """Distinct first-token ids of ``phrases``, each tokenised bare and with a leading space."""
    ids: set[int] = set()
    for phrase in phrases:
        for variant in (phrase, " " + phrase):
            toks = tokenizer(variant, add_special_tokens=False)["input_ids"]
            if toks:
                ids.add(int(toks[0]))
    if not ids:
        raise InputError("no refusal phrase produced a token", field="refusal_phrases")
    return sorted(ids)


def refusal_logodds_metric(refusal_ids: Sequence[int], position: int = -1) -> Metric:
    """Log-odds that the next token starts a refusal: ``log p(R) - log(1 - p(R))``.

    ``p(R)`` is the softmax mass on ``refusal_ids`` at ``position``. Computed in log space, so
    it stays finite for probabilities near 0 or 1.
    """
    index = torch.tensor(sorted(set(refusal_ids)), dtype=torch.long)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        logprobs = torch.log_softmax(logits[:, position].float(), dim=-1)
        mask = torch.zeros(logprobs.shape[-1], dtype=torch.bool, device=logprobs.device)
        mask[index.to(logprobs.device)] = True
        log_p = torch.logsumexp(logprobs[:, mask], dim=-1)
        log_not = torch.logsumexp(logprobs[:, ~mask], dim=-1)
        return log_p - log_not

    return metric


def kl_divergence(p_logits: Float[torch.Tensor, "... vocab"], q_logits: Float[torch.Tensor, "... vocab"], *,
                  dtype: torch.dtype = torch.float64) -> Float[torch.Tensor, "..."]:
    """``KL(softmax(p) || softmax(q))`` over the last axis, in nats: the one KL in alignscope.

    Shapes broadcast (e.g. one target ``(tokens, vocab)`` against every layer's
    ``(layers, tokens, vocab)``). Computed in ``dtype`` (float64 by default; float32 where the
    tensors are large), returned as float32.

    Example:
        >>> kl_divergence(torch.zeros(2, 5), torch.zeros(2, 5))
        tensor([0., 0.])
    """
    logp = torch.log_softmax(p_logits.to(dtype), dim=-1)
    logq = torch.log_softmax(q_logits.to(dtype), dim=-1)
    return (logp.exp() * (logp - logq)).sum(-1).float()


def single_token_id(tokenizer: PreTrainedTokenizerBase, text: str, *, field: str = "answer") -> int:
    """The id of ``text`` when it is exactly one token (no special tokens added).

    Raises:
        InputError: ``text`` is several tokens; the message shows how it splits.
    """
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        raise InputError(f"{text!r} must be a single token but splits into {len(ids)}: {pieces}; "
                         "try a leading space, e.g. ' Paris'", field=field)
    return int(ids[0])
