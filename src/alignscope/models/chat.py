"""Prompt formatting and tokenisation, in one place.

Chat mode renders the tokenizer's chat template around the user message (with the generation
prompt) and tokenises without adding special tokens again. Raw mode tokenises exactly as
``tokenizer(text)`` does. Either way the encoder reports how many *post-instruction* tokens
end each prompt: the template tokens after the user's message (``<|im_end|>``, the assistant
header, ...), where refusal directions are usually read. In raw mode that region is the last
token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Int
from transformers import PreTrainedTokenizerBase

from alignscope.errors import InputError


@dataclass(frozen=True)
class Encoded:
    """A left-padded batch.

    Attributes:
        input_ids: ``(batch, seq)`` token ids, left-padded.
        attention_mask: ``(batch, seq)``, 1 on real tokens.
        lengths: real length of each prompt.
        n_post: number of post-instruction tokens at the end of each prompt.
    """

    input_ids: Int[torch.Tensor, "batch seq"]
    attention_mask: Int[torch.Tensor, "batch seq"]
    lengths: list[int]
    n_post: list[int]

    def to(self, device: torch.device | str) -> Encoded:
        """The same batch on ``device``."""
        return Encoded(self.input_ids.to(device), self.attention_mask.to(device), self.lengths, self.n_post)


def has_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def render_chat(tokenizer: PreTrainedTokenizerBase, prompt: str, system: str | None = None) -> tuple[str, int]:
    """Render the chat template for one user turn plus the generation prompt.

    Returns:
        The text, and the character offset where the user's message ends.
    """
    if not has_chat_template(tokenizer):
        raise InputError("this tokenizer has no chat template; use raw mode (--no-chat / chat=False)", field="chat")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert isinstance(text, str)
    start = text.rfind(prompt)
    if start < 0:
        raise InputError("the chat template rewrote the prompt text; cannot locate the post-instruction tokens", field="chat")
    return text, start + len(prompt)


def encode_one(tokenizer: PreTrainedTokenizerBase, prompt: str, *, chat: bool, system: str | None = None) -> tuple[list[int], int]:
    """Token ids of one prompt and the number of post-instruction tokens at its end."""
    if not chat:
        ids = list(tokenizer(prompt)["input_ids"])
        if not ids:
            raise InputError("prompt tokenises to zero tokens", field="prompt")
        return ids, 1
    text, user_end = render_chat(tokenizer, prompt, system)
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        n_post = sum(1 for start, _ in enc["offset_mapping"] if start >= user_end)
    else:
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        n_post = len(tokenizer(text[user_end:], add_special_tokens=False)["input_ids"])
    return ids, max(1, min(n_post, len(ids)))


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad id lists into ``(input_ids, attention_mask)`` tensors."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq):] = torch.tensor(list(seq), dtype=torch.long)
            mask[row, width - len(seq):] = 1
    return ids, mask


def encode_batch(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    chat: bool,
    system: str | None = None,
) -> Encoded:
    """Tokenise prompts (chat-formatted or raw) into one left-padded batch."""
    if not prompts:
        raise InputError("no prompts to encode", field="prompts")
    encoded = [encode_one(tokenizer, p, chat=chat, system=system) for p in prompts]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids, mask = left_pad([e[0] for e in encoded], int(pad_id))
    return Encoded(ids, mask, [len(e[0]) for e in encoded], [e[1] for e in encoded])
