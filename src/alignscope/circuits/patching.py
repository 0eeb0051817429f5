"""Fast, exact activation patching for a clean/corrupt prompt pair.

Denoising (the default) writes clean activations into the corrupt run, one site at a time;
noising writes corrupt activations into the clean run. The effect of a site is
``metric(patched run) - metric(unpatched target run)``.

Speed comes from :mod:`alignscope.circuits.replay`: both runs are recorded once, a patch at
layer ``l`` re-runs only blocks ``l..n_layers-1`` from the recorded residual, all patch variants
are batched as a staircase over layers, and only the last position is unembedded. Sites where
the two runs' activations are bit-identical (e.g. tokens before the first difference) cannot
change anything, so they get effect exactly 0 without a forward pass. Results equal a naive loop of
full patched forward passes on a plain HF model to 1e-4 (see ``tests/circuits``).

Example:
    >>> res = activation_patching(lm, clean_ids, corrupt_ids, component="resid_pre",
    ...                           metric=logit_diff_metric(answer_id, foil_id))   # doctest: +SKIP
    >>> res.effect.shape                                                          # doctest: +SKIP
    torch.Size([30, 10])
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float

from alignscope.circuits.pairs import check_aligned
from alignscope.circuits.replay import Patch, RunRecord, check_replay, record_run, replay
from alignscope.circuits.summaries import right_aligned_mean
from alignscope.errors import InputError
from alignscope.hooks.points import hook_table
from alignscope.metrics import Metric
from alignscope.models.loader import LoadedModel
from alignscope.sites import Site

PATCH_COMPONENTS = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "head")
DIRECTIONS = ("denoise", "noise")


@dataclass(frozen=True)
class PatchingResult:
    """Effects of patching every site of one component.

    Attributes:
        component: the patched component (``resid_pre``, ``attn_out``, ``mlp_out``, ``head``, ...).
        direction: ``denoise`` (clean into corrupt) or ``noise`` (corrupt into clean).
        effect: ``(n_layers, n_positions)``; ``(n_layers, n_heads)`` for ``head``
            (``(n_layers, n_heads, n_positions)`` when heads were patched per position).
            ``metric(patched target run) - metric(target run)``.
        clean_metric: metric of the clean run.
        corrupt_metric: metric of the corrupt run.
        tokens: the clean prompt's tokens (position labels).
        seconds: wall time of the sweep (recording both runs included, model load excluded).
        method: ``activation``, ``attribution`` or ``attribution-ig``.
        extra: method details (e.g. ``ig_steps``, number of forward rows run).
    """

    component: str
    direction: str
    effect: Float[torch.Tensor, "n_layers n_cols"] | Float[torch.Tensor, "n_layers n_heads n_pos"]
    clean_metric: float
    corrupt_metric: float
    tokens: list[str]
    seconds: float
    method: str = "activation"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def target_metric(self) -> float:
        """Metric of the unpatched run that patches were written into."""
        return self.corrupt_metric if self.direction == "denoise" else self.clean_metric

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (the ``alignscope patch --json`` payload)."""
        return {
            "site": self.component, "method": self.method, "direction": self.direction, "tokens": list(self.tokens),
            "effect": self.effect.tolist(), "clean_metric": self.clean_metric, "corrupt_metric": self.corrupt_metric,
            "seconds": round(self.seconds, 4), **self.extra,
        }


def validate_options(lm: LoadedModel, component: str, direction: str) -> None:
    """Check ``component`` and ``direction`` (errors list the allowed values)."""
    if component not in PATCH_COMPONENTS:
        raise InputError(f"unknown site {component!r}; choose one of {', '.join(PATCH_COMPONENTS)}", field="site")
    if direction not in DIRECTIONS:
        raise InputError(f"unknown direction {direction!r}; choose denoise or noise", field="direction")
    if component == "resid_mid" and Site(0, component).hook_name not in hook_table(lm):
        raise InputError(f"{lm.model_type!r} has parallel attention: there is no resid_mid site", field="site")


def record_pair(lm: LoadedModel, clean_ids: Sequence[int], corrupt_ids: Sequence[int],
                components: Sequence[str]) -> tuple[RunRecord, RunRecord]:
    """Record both runs (checking that they align and that replay is exact for this model)."""
    check_aligned(lm.tokenizer, clean_ids, corrupt_ids)
    clean = record_run(lm, clean_ids, components)
    corrupt = record_run(lm, corrupt_ids, components)
    check_replay(lm, corrupt)
    return clean, corrupt


def site_rows(lm: LoadedModel, component: str, seq: int, *, per_position: bool = False) -> tuple[list[tuple[int, ...]], list[list[Patch]]]:
    """One single-site patch per (layer, position) or (layer, head[, position]).

    Returns:
        The effect-tensor index of each row, and the rows.
    """
    index: list[tuple[int, ...]] = []
    rows: list[list[Patch]] = []
    for layer in range(lm.n_layers):
        if component != "head":
            for pos in range(seq):
                index.append((layer, pos))
                rows.append([Patch(layer, component, (pos,))])
            continue
        positions: list[int | None] = list(range(seq)) if per_position else [None]
        for head in range(lm.n_heads):
            for hpos in positions:
                index.append((layer, head) if hpos is None else (layer, head, hpos))
                rows.append([Patch(layer, "head", None if hpos is None else (hpos,), head)])
    return index, rows


def activation_patching(
    lm: LoadedModel,
    clean_ids: Sequence[int],
    corrupt_ids: Sequence[int],
    *,
    component: str = "resid_pre",
    metric: Metric,
    direction: str = "denoise",
    progress: bool = False,
    per_position: bool = False,
    max_batch_tokens: int = 4096,
) -> PatchingResult:
    """Patch every site of ``component``, one at a time, and measure the metric change.

    Args:
        lm: the loaded model.
        clean_ids: token ids of the clean prompt.
        corrupt_ids: token ids of the corrupt prompt (same length).
        component: ``resid_pre``, ``resid_mid``, ``resid_post``, ``attn_out``, ``mlp_out`` or ``head``.
        metric: maps last-position logits ``(batch, 1, vocab)`` to ``(batch,)``.
        direction: ``denoise`` (clean activations into the corrupt run) or ``noise``.
        progress: progress bar on stderr.
        per_position: for ``head``, patch each head at each position separately.
        max_batch_tokens: memory bound for one batched forward.

    Returns:
        A :class:`PatchingResult`; ``effect`` is ``(n_layers, seq)``, or ``(n_layers, n_heads)``
        for ``head`` (``(n_layers, n_heads, seq)`` with ``per_position``).

    Raises:
        InputError: misaligned prompts (the message shows both tokenisations), bad options.
    """
    validate_options(lm, component, direction)
    start = time.perf_counter()
    clean, corrupt = record_pair(lm, clean_ids, corrupt_ids, [component])
    target, source = (corrupt, clean) if direction == "denoise" else (clean, corrupt)
    index, rows = site_rows(lm, component, target.seq_len, per_position=per_position)
    values = replay(lm, target, rows, {"source": source.acts}, metric, max_batch_tokens=max_batch_tokens, progress=progress)
    clean_metric = float(metric(clean.last_logits)[0])
    corrupt_metric = float(metric(corrupt.last_logits)[0])
    base = corrupt_metric if direction == "denoise" else clean_metric
    shape = _effect_shape(lm, component, clean.seq_len, per_position)
    effect = torch.zeros(shape)
    for idx, value in zip(index, values.tolist(), strict=True):
        effect[idx] = value - base
    seconds = time.perf_counter() - start
    tokens = [str(t) for t in lm.tokenizer.convert_ids_to_tokens(list(clean_ids))]
    return PatchingResult(component, direction, effect, clean_metric, corrupt_metric, tokens, seconds)


def _effect_shape(lm: LoadedModel, component: str, seq: int, per_position: bool) -> tuple[int, ...]:
    if component != "head":
        return (lm.n_layers, seq)
    return (lm.n_layers, lm.n_heads, seq) if per_position else (lm.n_layers, lm.n_heads)


def mean_result(results: Sequence[PatchingResult]) -> PatchingResult:
    """Average several pairs' results into one (``effect``, metrics and ``seconds`` summed).

    Position axes are right-aligned (position ``-1`` is every prompt's last token), so prompts of
    different lengths average position by position from the end; a position only some prompts
    have is averaged over those. Token labels are the shared tokens where all prompts agree,
    else ``-k`` offsets.
    """
    if not results:
        raise InputError("no results to average", field="pairs")
    first = results[0]
    if len(results) == 1:
        return first
    if first.component == "head" and first.effect.ndim == 2:
        effect = torch.stack([r.effect for r in results]).mean(0)
        tokens = first.tokens
    else:
        effect = right_aligned_mean([r.effect for r in results])
        width = effect.shape[-1]
        same = all(r.tokens == first.tokens for r in results)
        tokens = list(first.tokens) if same else [f"{k - width}" for k in range(width)]
    n = len(results)
    return PatchingResult(first.component, first.direction, effect, sum(r.clean_metric for r in results) / n,
                          sum(r.corrupt_metric for r in results) / n, tokens, sum(r.seconds for r in results),
                          method=first.method, extra={**first.extra, "n_pairs": n})
