"""Batched greedy generation with an optional intervention active.

Prompts are chat-formatted (or tokenised raw), left-padded into batches and decoded greedily
with the KV cache. By default (``backend="auto"``) generation runs on the native twin
(:func:`~alignscope.models.native.native_model`: the same weights in a plain HF module with fast
attention), and the intervention's hooks go on the twin's modules
(:class:`~alignscope.hooks.backends.NativeTarget`). Where the twin cannot serve (no twin for
this model, an intervention on a site the twin lacks such as ``resid_mid``, or hooks already
attached to the bridge), generation runs
``lm.hf_model.generate`` through the TransformerBridge as before: the bridge wraps the HF modules
in place, so hooks attached by ``intervention.apply(lm)`` fire on the prompt pass and on every
cached decoding step.

Prompts are batched in order of token length, which keeps padding small; results come back in
the input order. Greedy decoding of a left-padded batch gives the same tokens as running each
prompt alone (checked in tests against a manual no-cache loop on a fresh plain HF model).

Example:
    >>> texts = generate(lm, ["How do I bake bread?"], max_new_tokens=16)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from tqdm.auto import tqdm
from transformers import GenerationConfig

from alignscope.errors import InputError
from alignscope.hooks.backends import HookTarget, select_target
from alignscope.hooks.numerics import check_logits
from alignscope.models.batches import Batch, encode_prompts, pad_id, padded_batches
from alignscope.models.loader import LoadedModel
from alignscope.steering.interventions import Intervention, intervention_scope


@dataclass(frozen=True)
class Generations:
    """Greedy continuations of a list of prompts, in input order.

    Attributes:
        texts: decoded continuations (special tokens dropped, generation stops at EOS).
        token_ids: generated token ids per prompt, EOS excluded.
        first_logits: ``(n_prompts, vocab)`` raw logits of the first generated token, i.e.
            the next-token logits after the prompt, with the intervention active.
    """

    texts: list[str]
    token_ids: list[list[int]]
    first_logits: Float[torch.Tensor, "n vocab"]


def generation_target(lm: LoadedModel, intervention: Intervention | None, backend: str = "auto") -> HookTarget:
    """The hook target to generate on: the native twin when ``backend`` and the intervention's sites allow it.

    Raises:
        InputError: an unknown backend, or ``native`` where the twin cannot serve.
    """
    sites = [] if intervention is None else intervention.sites(lm)
    return select_target(lm, sites, backend)


def generate_detailed(
    lm: LoadedModel,
    prompts: Sequence[str],
    *,
    chat: bool = True,
    max_new_tokens: int = 48,
    batch_size: int = 16,
    intervention: Intervention | None = None,
    progress: bool = False,
    system: str | None = None,
    min_new_tokens: int = 0,
    backend: str = "auto",
) -> Generations:
    """Greedy generation returning texts, token ids and the first-step logits.

    Args:
        lm: the loaded model.
        prompts: user messages (chat mode) or raw texts.
        chat: apply the chat template (``True``) or tokenise raw text as ``tokenizer(text)``.
        max_new_tokens: tokens to generate at most per prompt.
        batch_size: prompts per ``generate`` call.
        intervention: an :class:`~alignscope.steering.interventions.Intervention`, active for the
            whole generation.
        progress: show a tqdm bar on stderr.
        system: optional system message (chat mode).
        min_new_tokens: suppress EOS until this many tokens exist (fixed-length runs, e.g. benchmarks).
        backend: ``auto`` (the native twin where it can serve, else the bridge), ``native`` (the
            twin, or an :class:`InputError` saying why not) or ``bridge`` (always the bridge).

    Returns:
        :class:`Generations` in the order of ``prompts``.

    Raises:
        InputError: bad ``max_new_tokens``/``batch_size``/``backend``, or ``native`` where the twin cannot serve.
    """
    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be at least 1, got {max_new_tokens}", field="max_new_tokens")
    target = generation_target(lm, intervention, backend)
    if not prompts:
        return Generations([], [], torch.empty(0, lm.vocab_size))
    batches = padded_batches(encode_prompts(lm.tokenizer, prompts, chat=chat, system=system), batch_size, pad_id(lm.tokenizer))
    texts: list[str] = [""] * len(prompts)
    token_ids: list[list[int]] = [[] for _ in prompts]
    first: list[torch.Tensor | None] = [None] * len(prompts)
    config = _greedy_config(lm, max_new_tokens, min_new_tokens)
    bar = tqdm(total=len(prompts), desc="generate", unit="prompt", disable=not progress, leave=False)
    with intervention_scope(lm, intervention, target), torch.no_grad():
        for batch in batches:
            new, logits = _generate_batch(lm, target, batch, config)
            for row, idx in enumerate(batch.index):
                token_ids[idx] = new[row]
                texts[idx] = str(lm.tokenizer.decode(new[row], skip_special_tokens=True))
                first[idx] = logits[row]
            bar.update(len(batch.index))
    bar.close()
    return Generations(texts, token_ids, torch.stack([t for t in first if t is not None]))


def generate(
    lm: LoadedModel,
    prompts: Sequence[str],
    *,
    chat: bool = True,
    max_new_tokens: int = 48,
    batch_size: int = 16,
    intervention: Intervention | None = None,
    progress: bool = False,
    backend: str = "auto",
) -> list[str]:
    """Greedy continuations of ``prompts`` (left-padded batches, KV cache, intervention active).

    See :func:`generate_detailed` for the arguments; this returns only the decoded texts.

    Example:
        >>> generate(lm, ["Say hi"], max_new_tokens=8, intervention=iv)   # doctest: +SKIP
        ['Hi! How can I help?']
    """
    return generate_detailed(lm, prompts, chat=chat, max_new_tokens=max_new_tokens, batch_size=batch_size,
                             intervention=intervention, progress=progress, backend=backend).texts


def _greedy_config(lm: LoadedModel, max_new_tokens: int, min_new_tokens: int = 0) -> GenerationConfig:
    """A fresh greedy config, so no sampling or penalty settings of the model's own config leak in."""
    tok = lm.tokenizer
    eos = tok.eos_token_id if tok.eos_token_id is not None else lm.config.eos_token_id
    return GenerationConfig(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, do_sample=False, num_beams=1, use_cache=True,
                            pad_token_id=int(tok.pad_token_id), eos_token_id=eos,
                            output_logits=True, return_dict_in_generate=True)


def _generate_batch(lm: LoadedModel, target: HookTarget, batch: Batch,
                    config: GenerationConfig) -> tuple[list[list[int]], torch.Tensor]:
    """Generate for one batch on ``target``; returns the new ids per row (cut at EOS) and first-step logits ``(b, vocab)``.

    Raises:
        NumericalError: a decoding step's logits hold inf/NaN (named by step, and by the layer and
            site where they began on the prompt, when the prompt pass already shows them).
    """
    ids, mask = batch.to(lm.device)
    out = target.root.generate(input_ids=ids, attention_mask=mask, generation_config=config)  # type: ignore[operator]
    for step, step_logits in enumerate(out.logits):
        check_logits(step_logits, mask, target, ids, n_layers=lm.n_layers, dtype=lm.dtype,
                     what=f"generation step {step}'s logits", decoding=step > 0)
    new = out.sequences[:, ids.shape[1]:].tolist()
    eos = config.eos_token_id
    stops = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
    return [_cut(row, stops) for row in new], out.logits[0].float().cpu()


def _cut(row: list[int], stops: set[int]) -> list[int]:
    for i, tok in enumerate(row):
        if tok in stops:
            return row[:i]
    return row
