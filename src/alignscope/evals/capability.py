"""Capability side effects of an intervention: first-token KL and perplexity.

* :func:`first_token_kl` compares the next-token distribution after each prompt with and
  without the intervention: ``KL(unsteered || steered)`` in nats, one value per prompt.
* :func:`perplexity` is the token-weighted perplexity of raw texts (every token after the
  first is predicted), with or without an intervention.

Both run left-padded batches (:mod:`alignscope.models.batches`) on one hook target, chosen once
per call as generation chooses it (the native twin where it can serve, else the bridge), so the
steered and unsteered passes of one KL go through the same code path. Position ids come from the
attention mask on either back-end, so padding does not change the numbers.

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

from alignscope.errors import InputError
from alignscope.evals.generation import generation_target, intervention_scope
from alignscope.hooks.backends import HookTarget
from alignscope.hooks.forward import next_token_logits as target_logits
from alignscope.hooks.forward import run_batches
from alignscope.metrics import kl_divergence
from alignscope.models.batches import Batch, encode_prompts, pad_id, padded_batches
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
    target: HookTarget | None = None,
) -> Float[torch.Tensor, "n vocab"]:
    """Logits of the token after each prompt, ``(n, vocab)`` float32 on CPU, in input order.

    ``target`` is the back-end to run on (default: chosen for ``intervention`` as generation chooses).
    """
    if not prompts:
        raise InputError("no prompts given", field="prompts")
    target = generation_target(lm, intervention) if target is None else target
    batches = padded_batches(encode_prompts(lm.tokenizer, prompts, chat=chat), batch_size, pad_id(lm.tokenizer))
    with intervention_scope(lm, intervention, target):
        return target_logits(lm, target, batches, progress=progress)


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

    Both passes run on the back-end chosen for the intervention.
    """
    target = generation_target(lm, intervention)
    base = next_token_logits(lm, prompts, chat=chat, batch_size=batch_size, progress=progress, target=target)
    steered = next_token_logits(lm, prompts, chat=chat, batch_size=batch_size, intervention=intervention, progress=progress,
                                target=target)
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
    per_text = text_nlls(lm, texts, intervention, batch_size=batch_size, progress=progress)
    return sum(nll for nll, _ in per_text), sum(n for _, n in per_text)


def _first_real(batch: Batch) -> torch.Tensor:
    """Each row's first real column: a raw text is all response, its first token the only context."""
    return batch.attention_mask.long().argmax(-1)


def text_nlls(
    lm: LoadedModel,
    texts: Sequence[str],
    intervention: Intervention | None = None,
    *,
    batch_size: int = 8,
    progress: bool = False,
) -> list[tuple[float, int]]:
    """Per text, in input order: summed next-token negative log-likelihood and the number of predicted tokens.

    Each text is tokenised as ``tokenizer(text)``; its first token is context only.
    """
    batches = padded_batches([list(lm.tokenizer(t)["input_ids"]) for t in texts], batch_size, pad_id(lm.tokenizer))
    out: list[tuple[float, int]] = [(0.0, 0)] * len(texts)
    target = generation_target(lm, intervention)
    with intervention_scope(lm, intervention, target):
        for batch, logits in run_batches(lm, target, batches, desc="perplexity", progress=progress, prompt_end=_first_real):
            logp = torch.log_softmax(logits.float().cpu()[:, :-1].double(), dim=-1)
            picked = logp.gather(-1, batch.input_ids[:, 1:, None])[..., 0]
            mask = batch.attention_mask
            valid = (mask[:, 1:] * mask[:, :-1]).bool()
            for row, i in enumerate(batch.index):
                out[i] = (-float(picked[row][valid[row]].sum()), int(valid[row].sum()))
    return out
