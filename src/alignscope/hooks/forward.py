"""Forward passes over padded batches on one hook target, so every pass of a call uses the same back-end.

A caller chooses the :class:`~alignscope.hooks.backends.HookTarget` once
(:func:`~alignscope.hooks.backends.select_target`), attaches any intervention to it, and runs all
its batches through :func:`run_batches`; first-token KL compares two such runs on one target, so
the steered and unsteered distributions come from the same code path as generation.

Example:
    >>> target = select_target(lm, iv.sites(lm), "auto")                       # doctest: +SKIP
    >>> with iv.apply(lm, target):                                                  # doctest: +SKIP
    ...     logits = next_token_logits(lm, target, padded_batches(seqs, 16, pad))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext

import torch
from tqdm.auto import tqdm

from alignscope.hooks.backends import HookTarget
from alignscope.hooks.numerics import check_logits
from alignscope.hooks.prompt_ends import prompt_ends
from alignscope.models.batches import Batch, gather
from alignscope.models.loader import LoadedModel


def run_batches(lm: LoadedModel, target: HookTarget, batches: Sequence[Batch], *, desc: str = "forward",
                progress: bool = False, prompt_end: Callable[[Batch], torch.Tensor] | None = None
                ) -> Iterator[tuple[Batch, torch.Tensor]]:
    """Each batch with its ``(rows, seq, vocab)`` logits from ``target`` (no grad, no cache).

    ``prompt_end(batch)``, when given, is the column of each row's last prompt token, declared to the
    interventions for the pass (:func:`~alignscope.hooks.prompt_ends.prompt_ends`): a teacher-forced pass
    scores a response after its prompt in one call.

    Raises:
        NumericalError: a batch's logits hold inf/NaN at a real position (the message names the
            layer and site where they began; see :mod:`alignscope.hooks.numerics`).
    """
    for batch in tqdm(batches, desc=desc, disable=not progress, leave=False):
        ids, mask = batch.to(lm.device)
        declared = prompt_ends(prompt_end(batch)) if prompt_end is not None else nullcontext()
        with torch.no_grad(), declared:  # scoped to the call: never left set while the generator is suspended
            logits = target.forward(ids, mask)
            check_logits(logits, mask, target, ids, n_layers=lm.n_layers, dtype=lm.dtype)
        yield batch, logits


def next_token_logits(lm: LoadedModel, target: HookTarget, batches: Sequence[Batch], *,
                      progress: bool = False) -> torch.Tensor:
    """``(n, vocab)`` float32 CPU logits of the token after each row, in input order."""
    n = sum(len(b.index) for b in batches)
    return gather(n, ((b.index, logits[:, -1].float().cpu()) for b, logits in run_batches(lm, target, batches, desc="logits",
                                                                                          progress=progress)))
