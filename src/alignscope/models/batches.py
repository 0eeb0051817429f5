"""The one batched-forward iterator: encode, sort by length, left-pad, and put results back in input order.

Every batched pass over prompts (generation, next-token logits, perplexity, probe features,
direction selection) builds its batches here, so all of them pad the same way: on the left, with
the tokenizer's pad id, and with an attention mask of 1 on real tokens. Prompts are grouped by
token length (a stable sort), which keeps padding small; :func:`gather` puts per-batch results
back in the order of the input.

Example:
    >>> batches = padded_batches(encode_prompts(lm.tokenizer, ["Hi", "Tell me a story"], chat=True), 16, pad_id(lm.tokenizer))  # doctest: +SKIP
    >>> rows = gather(len(texts), [(b.index, lm.bridge(b.input_ids, attention_mask=b.attention_mask)[:, -1]) for b in batches])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from alignscope.errors import InputError
from alignscope.models.chat import encode_one, left_pad


@dataclass(frozen=True)
class Batch:
    """Left-padded rows of one forward pass.

    Attributes:
        index: each row's position in the input order.
        input_ids: ``(rows, width)`` token ids, padded on the left (CPU).
        attention_mask: ``(rows, width)``, 1 on real tokens.
    """

    index: list[int]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    def to(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)`` on ``device``."""
        return self.input_ids.to(device), self.attention_mask.to(device)


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id padding uses (the loader gives every tokenizer one; 0 for a bare tokenizer without)."""
    return int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else 0


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: Iterable[str], *, chat: bool,
                   system: str | None = None) -> list[list[int]]:
    """Token ids of each prompt: chat-formatted, or raw text as ``tokenizer(text)``."""
    return [encode_one(tokenizer, p, chat=chat, system=system)[0] for p in prompts]


def padded_batches(sequences: Sequence[Sequence[int]], batch_size: int, pad: int, *, sort: bool = True) -> list[Batch]:
    """Batches of at most ``batch_size`` rows, grouping sequences of similar length (``sort=False``: input order).

    Raises:
        InputError: ``batch_size`` below 1.
    """
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}", field="batch_size")
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i])) if sort else list(range(len(sequences)))
    out = []
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        ids, mask = left_pad([sequences[i] for i in index], pad)
        out.append(Batch(index, ids, mask))
    return out


def gather(n: int, results: Iterable[tuple[list[int], torch.Tensor]]) -> torch.Tensor:
    """Stack per-batch results ``(index, (rows, ...))`` into ``(n, ...)`` in input order.

    Raises:
        ValueError: the batches do not cover every one of the ``n`` rows exactly once.
    """
    parts = list(results)
    if not parts:
        raise ValueError("no batches to gather")
    index = [i for idx, _ in parts for i in idx]
    if sorted(index) != list(range(n)):
        raise ValueError(f"batches cover rows {sorted(index)[:8]}..., expected each of 0..{n - 1} once")
    values = torch.cat([v for _, v in parts])
    out = torch.empty_like(values)
    out[torch.tensor(index)] = values
    return out
