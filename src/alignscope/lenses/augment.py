"""Augment a tuned-lens corpus with text sampled from the model itself.

The built-in corpus is hand-written text followed by samples drawn this way from the embedded
SmolLM2-135M-Instruct: each hand-written document's opening words are continued as raw text,
and a list of writing requests (stories, explanations, dialogues, instructions, news, lists,
code) is answered in chat mode. Sampling is seeded (temperature 0.8, top-p 0.95), so the same
model and seed give the same text. A tuned lens only needs the model's own hidden states and
output distribution, so the model's own text is valid training input; the held-out evaluation
text is hand-written and never sampled.

Example:
    >>> docs = sample_documents(lm, openings, requests, max_new_tokens=200, seed=0)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from alignscope.lenses.corpus import documents
from alignscope.models.chat import encode_batch
from alignscope.models.loader import LoadedModel

TOPICS = (
    "a lost key", "a city garden", "the first day at a new school", "a storm at sea", "a friendly robot",
    "a bakery at dawn", "a long train journey", "an old map", "a football match", "a quiet library",
    "a mountain village", "a birthday surprise", "a power cut", "a rescued cat", "a science fair",
    "a night market", "a broken bicycle", "a letter from a grandparent", "a snowy morning", "a chess club",
)
KINDS = (
    "Write a short story about {t}.", "Explain, in simple words, something interesting about {t}.",
    "Write a dialogue between two friends about {t}.", "Write step-by-step instructions related to {t}.",
    "Write a short local news report about {t}.", "Write a bulleted list of ideas about {t}.",
    "Write a short Python function with comments that could be used for {t}.",
)


def writing_requests() -> list[str]:
    """Chat requests: every kind of text for every topic (140 prompts)."""
    return [k.format(t=t) for t in TOPICS for k in KINDS]


def openings(text: str, n_words: int = 12) -> list[str]:
    """The first ``n_words`` words of each document of ``text``."""
    return [" ".join(doc.split()[:n_words]) for doc in documents(text)]


def sample_documents(
    lm: LoadedModel, prompts: Sequence[str], *, chat: bool, max_new_tokens: int = 200, batch_size: int = 16,
    seed: int = 0, temperature: float = 0.8, top_p: float = 0.95, progress: bool = False,
) -> list[str]:
    """Sample one continuation per prompt; raw mode keeps the opening words in the document."""
    torch.manual_seed(seed)
    out: list[str] = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="sampling", disable=not progress):
        chunk = list(prompts[start:start + batch_size])
        enc = encode_batch(lm.tokenizer, chunk, chat=chat).to(lm.device)
        with torch.no_grad():
            gen = lm.hf_model.generate(  # type: ignore[operator]
                input_ids=enc.input_ids, attention_mask=enc.attention_mask, do_sample=True, temperature=temperature,
                top_p=top_p, max_new_tokens=max_new_tokens, pad_token_id=lm.tokenizer.pad_token_id)
        for prompt, row in zip(chunk, gen[:, enc.input_ids.shape[1]:], strict=True):
            body = str(lm.tokenizer.decode(row, skip_special_tokens=True)).strip()
            doc = body if chat else f"{prompt} {body}"
            doc = "\n".join(line for line in doc.splitlines() if line.strip())  # blank lines separate documents
            if len(doc.split()) >= 20:
                out.append(doc)
    return out
