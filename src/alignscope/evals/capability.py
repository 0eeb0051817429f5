"""Capability side effects of an intervention: first-token KL and perplexity.

* :func:`first_token_kl` compares the next-token distribution after each prompt with and
  without the intervention: ``KL(unsteered || steered)`` in nats, one value per prompt.
* :func:`perplexity` is the token-weighted perplexity of raw texts (every token after the
  first is predicted), with or without an intervention.

Both run padded batches through the TransformerBridge, whose forward takes the attention mask
and derives position ids from it, so padding does not change the numbers.

Example:
    >>> kl = first_token_kl(lm, harmless_texts, intervention)   # doctest: +SKIP
    >>> float(kl.mean())                                        # doctest: +SKIP
    0.012
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from alignscope.errors import InputError
from alignscope.evals.generation import intervention_scope, length_batches
from alignscope.metrics import kl_divergence
from alignscope.models.chat import encode_one, left_pad
from alignscope.models.loader import LoadedModel
from alignscope.steering.interventions import Intervention


def next_token_logits(
    lm: LoadedModel,
    prompts: Sequence[str],
    *,
    chat: bool = True,
    batch_size: int = 16,
    intervention: Intervention | None = None,
    progress: bool = False,
) -> Float[torch.Tensor, "n vocab"]:
    """Logits of the token after each prompt, ``(n, vocab)`` float32 on CPU, in input order."""
    if not prompts:
        raise InputError("no prompts given", field="prompts")
    encoded = [encode_one(lm.tokenizer, p, chat=chat)[0] for p in prompts]
    out = torch.empty(len(prompts), lm.vocab_size)
    pad = int(lm.tokenizer.pad_token_id)
    with intervention_scope(lm, intervention), torch.no_grad():
        for batch in tqdm(list(length_batches([len(e) for e in encoded], batch_size)), desc="logits", disable=not progress, leave=False):
            ids, mask = left_pad([encoded[i] for i in batch], pad)
            logits = lm.bridge(ids.to(lm.device), attention_mask=mask.to(lm.device))
            out[batch] = logits[:, -1].float().cpu()
    return out


def first_token_kl(
    lm: LoadedModel,
    prompts: Sequence[str],
    intervention: Intervention,
    *,
    chat: bool = True,
    batch_size: int = 16,
    progress: bool = False,
) -> Float[torch.Tensor, " n"]:
    """``KL(unsteered || steered)`` of the next-token distribution after each prompt, ``(n,)`` nats.

    Args:
        lm: the loaded model.
        prompts: prompts (usually harmless ones: the intervention should leave them alone).
        intervention: object with ``.apply(lm)``.
        chat: chat-format the prompts.
        batch_size: prompts per forward pass.
        progress: tqdm bar on stderr.
    """
    base = next_token_logits(lm, prompts, chat=chat, batch_size=batch_size, progress=progress)
    steered = next_token_logits(lm, prompts, chat=chat, batch_size=batch_size, intervention=intervention, progress=progress)
    return kl_divergence(base, steered)


def kl_summary(values: Float[torch.Tensor, " n"], *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Mean, median and max of per-prompt KL values, with a 95% percentile-bootstrap interval of the mean.

    KL is non-negative and skewed (most prompts near 0, a few large), so a normal interval
    would dip below zero; the seeded bootstrap does not.
    """
    vals = values.double().flatten()
    if vals.numel() == 0:
        raise InputError("no KL values to summarise", field="values")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, vals.numel(), (n_boot, vals.numel()), generator=gen)
    boots = vals[idx].mean(1)
    lo, hi = torch.quantile(boots, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return {"n": int(vals.numel()), "mean": float(vals.mean()), "ci95": [lo, hi], "median": float(vals.median()),
            "max": float(vals.max()), "ci_method": "percentile bootstrap of the mean"}


def perplexity(
    lm: LoadedModel,
    texts: Sequence[str],
    intervention: Intervention | None = None,
    *,
    batch_size: int = 8,
    progress: bool = False,
) -> float:
    """Token-weighted perplexity of raw ``texts`` (tokenised as ``tokenizer(text)``).

    ``exp(total NLL / number of predicted tokens)``; each text's first token is context only.

    Raises:
        InputError: no text has at least two tokens.
    """
    nll, count = token_nll(lm, texts, intervention, batch_size=batch_size, progress=progress)
    if count == 0:
        raise InputError("perplexity needs texts of at least two tokens", field="texts")
    return math.exp(nll / count)


def token_nll(
    lm: LoadedModel,
    texts: Sequence[str],
    intervention: Intervention | None = None,
    *,
    batch_size: int = 8,
    progress: bool = False,
) -> tuple[float, int]:
    """Summed next-token negative log-likelihood over ``texts`` and the number of predicted tokens."""
    encoded = [list(lm.tokenizer(t)["input_ids"]) for t in texts]
    total, count = 0.0, 0
    pad = int(lm.tokenizer.pad_token_id)
    with intervention_scope(lm, intervention), torch.no_grad():
        for batch in tqdm(list(length_batches([len(e) for e in encoded], batch_size)), desc="perplexity", disable=not progress, leave=False):
            ids, mask = left_pad([encoded[i] for i in batch], pad)
            logits = lm.bridge(ids.to(lm.device), attention_mask=mask.to(lm.device)).float().cpu()
            logp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
            target = ids[:, 1:]
            picked = logp.gather(-1, target[..., None])[..., 0]
            valid = (mask[:, 1:] * mask[:, :-1]).bool()
            total -= float(picked[valid].sum())
            count += int(valid.sum())
    return total, count
