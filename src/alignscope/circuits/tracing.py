"""ROME-style causal tracing (Meng et al. 2022): noise the subject, restore clean states, measure recovery.

1. Clean run of a factual prompt ("The Eiffel Tower is located in the city of").
2. Corrupted run: Gaussian noise (``noise`` x the embedding standard deviation, 3 by default,
   seeded) added to the token embeddings of the subject's tokens.
3. Restored runs: the corrupted run with one clean state written back at one (layer, position),
   or a window of layers for attention / MLP outputs (10 by default, centred on the layer).

The indirect effect of a state is ``metric(restored) - metric(corrupted)``; the metric is the
probability of the answer token (or the answer-minus-foil logit difference when a foil is given).
Kinds: ``resid`` restores the block output (``resid_post``), ``attn`` the attention output
(``attn_out``), ``mlp`` the MLP output (``mlp_out``). All restored runs go through the batched
replay engine, so a restore at layer ``l`` recomputes only blocks from ``l`` on.

Example:
    >>> res = causal_trace(lm, "The Eiffel Tower is located in the city of", "The Eiffel Tower")  # doctest: +SKIP
    >>> res.effects["mlp"].shape                                                                 # doctest: +SKIP
    torch.Size([30, 10])
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float

from alignscope.circuits.replay import Patch, check_replay, record_run, replay
from alignscope.errors import InputError
from alignscope.hooks.handle import HookHandle
from alignscope.metrics import Metric, logit_diff_metric, single_token_id
from alignscope.models.chat import encode_one, render_chat
from alignscope.models.loader import LoadedModel
from alignscope.models.registry import get_arch, resolve_module

KINDS: dict[str, str] = {"resid": "resid_post", "attn": "attn_out", "mlp": "mlp_out"}


@dataclass(frozen=True)
class TraceResult:
    """Indirect effects of restoring clean states into a subject-noised run.

    Attributes:
        tokens: the prompt's tokens.
        subject_positions: token positions that were noised.
        answer: the answer token's text; ``answer_id`` its id.
        metric: ``prob`` (answer probability) or ``logit_diff``.
        clean_metric: metric of the clean run.
        corrupt_metric: metric of the noised run (mean over noise samples).
        effects: kind -> ``(n_layers, seq)`` indirect effects (mean over noise samples).
        noise_std: the absolute noise standard deviation used.
        window: layers restored together for ``attn``/``mlp``; ``resid_window`` for ``resid``.
        samples: number of noise samples averaged.
        seconds: wall time of the tracing (model load excluded).
    """

    tokens: list[str]
    subject_positions: list[int]
    answer: str
    answer_id: int
    metric: str
    clean_metric: float
    corrupt_metric: float
    effects: dict[str, Float[torch.Tensor, "n_layers seq"]]
    noise_std: float
    window: int
    resid_window: int
    samples: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (the ``alignscope trace --json`` payload)."""
        return {
            "site": [KINDS[k] for k in self.effects], "method": "causal_tracing", "tokens": self.tokens,
            "subject_positions": self.subject_positions, "answer": self.answer, "metric": self.metric,
            "effect": {KINDS[k]: v.tolist() for k, v in self.effects.items()},
            "clean_metric": self.clean_metric, "corrupt_metric": self.corrupt_metric, "noise_std": self.noise_std,
            "window": self.window, "resid_window": self.resid_window, "samples": self.samples, "seconds": round(self.seconds, 4),
        }


def answer_prob_metric(answer_id: int) -> Metric:
    """Probability of ``answer_id`` at the last position."""

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits[:, -1].float(), dim=-1)[:, answer_id]

    return metric


def subject_positions(tokenizer: Any, prompt: str, subject: str, *, chat: bool = False) -> list[int]:
    """Token positions of ``subject`` inside ``prompt`` (as tokenised by ``encode_one``).

    Raises:
        InputError: the subject is not in the prompt, or covers no token.
    """
    ids, _ = encode_one(tokenizer, prompt, chat=chat)
    text = render_chat(tokenizer, prompt)[0] if chat else prompt
    start = text.rfind(subject) if chat else text.find(subject)
    if not subject or start < 0:
        raise InputError(f"subject {subject!r} does not occur in the prompt {prompt!r}", field="subject")
    end = start + len(subject)
    enc = tokenizer(text, add_special_tokens=not chat, return_offsets_mapping=True)
    if list(enc["input_ids"]) != list(ids):
        raise InputError("cannot map the subject to tokens: re-tokenising with offsets gave different ids", field="subject")
    positions = [i for i, (s, e) in enumerate(enc["offset_mapping"]) if e > s and e > start and s < end]
    if not positions:
        raise InputError(f"subject {subject!r} covers no token of the prompt", field="subject")
    return positions


def embedding_std(lm: LoadedModel, chunk: int = 8192) -> float:
    """Standard deviation of the embedding module's output over the whole vocabulary."""
    embed = resolve_module(lm.hf_model, get_arch(lm.model_type).embed)
    total, total_sq, count = 0.0, 0.0, 0
    with torch.no_grad():
        for i in range(0, lm.vocab_size, chunk):
            ids = torch.arange(i, min(i + chunk, lm.vocab_size), device=lm.device).unsqueeze(0)
            out = embed(ids).double()
            total += float(out.sum())
            total_sq += float((out * out).sum())
            count += out.numel()
    mean = total / count
    return float(max(total_sq / count - mean * mean, 0.0) ** 0.5)


def subject_noise(n_positions: int, d_model: int, std: float, seed: int) -> torch.Tensor:
    """The seeded Gaussian noise ``(n_positions, d_model)`` added to subject embeddings."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((n_positions, d_model), generator=gen) * std


@contextmanager
def embedding_noise(lm: LoadedModel, positions: Sequence[int], noise: torch.Tensor) -> Iterator[None]:
    """Add ``noise`` ``(len(positions), d_model)`` to the embedding output at ``positions`` while active."""
    embed = resolve_module(lm.hf_model, get_arch(lm.model_type).embed)
    index = torch.tensor(list(positions), device=lm.device)

    def hook(_m: torch.nn.Module, _i: Any, out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[:, index] += noise.to(out.device, out.dtype)
        return out

    with HookHandle() as handle:
        handle.on_output(embed, hook)
        yield


def window_layers(layer: int, window: int, n_layers: int) -> list[int]:
    """The ``window`` layers centred on ``layer``, clipped to the model (ROME's convention)."""
    lo = max(0, layer - window // 2)
    hi = min(n_layers, layer - (-window // 2))
    return list(range(lo, max(hi, lo + 1)))


def trace_rows(n_layers: int, seq: int, kind: str, window: int) -> list[list[Patch]]:
    """Rows restoring ``kind`` at every (layer, position), layer-major."""
    comp = KINDS[kind]
    return [[Patch(w, comp, (pos,), source="clean") for w in window_layers(layer, window, n_layers)]
            for layer in range(n_layers) for pos in range(seq)]


def causal_trace(
    lm: LoadedModel,
    prompt: str,
    subject: str,
    *,
    answer: str | None = None,
    foil: str | None = None,
    chat: bool = False,
    noise: float = 3.0,
    seed: int = 0,
    samples: int = 1,
    window: int = 10,
    resid_window: int = 1,
    kinds: Sequence[str] = ("resid", "attn", "mlp"),
    progress: bool = False,
) -> TraceResult:
    """Causal tracing of one factual prompt.

    Args:
        lm: the loaded model.
        prompt: the prompt text (raw ``tokenizer(text)`` unless ``chat``).
        subject: substring of ``prompt`` whose tokens are noised.
        answer: the answer token (single token); default: the clean run's top prediction.
        foil: if given, the metric is ``logit[answer] - logit[foil]`` instead of ``p(answer)``.
        chat: format with the chat template.
        noise: noise standard deviation as a multiple of the embedding standard deviation.
        seed: seed of the first noise sample (sample ``i`` uses ``seed + i``).
        samples: number of noise samples to average.
        window: layers restored together for ``attn`` and ``mlp``.
        resid_window: layers restored together for ``resid`` (1: single states).
        kinds: any of ``resid``, ``attn``, ``mlp``.
        progress: progress bar on stderr.

    Returns:
        A :class:`TraceResult` with ``(n_layers, seq)`` indirect effects per kind.
    """
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise InputError(f"unknown trace kind(s) {bad}; choose from {', '.join(KINDS)}", field="kinds")
    if samples < 1 or window < 1 or resid_window < 1 or noise < 0:
        raise InputError("samples, window and resid_window must be >= 1 and noise >= 0", field="samples")
    start = time.perf_counter()
    ids, _ = encode_one(lm.tokenizer, prompt, chat=chat)
    subj = subject_positions(lm.tokenizer, prompt, subject, chat=chat)
    comps = [KINDS[k] for k in kinds]
    clean = record_run(lm, ids, comps)
    check_replay(lm, clean)
    answer_id = int(clean.last_logits[0, -1].argmax()) if answer is None else single_token_id(lm.tokenizer, answer, field="answer")
    metric = answer_prob_metric(answer_id) if foil is None else logit_diff_metric(answer_id, single_token_id(lm.tokenizer, foil, field="foil"))
    std = noise * embedding_std(lm)
    rows_by_kind = {k: trace_rows(lm.n_layers, len(ids), k, resid_window if k == "resid" else window) for k in kinds}
    all_rows = [r for k in kinds for r in rows_by_kind[k]]
    total = torch.zeros(len(all_rows))
    corrupt_total = 0.0
    for s in range(samples):
        with embedding_noise(lm, subj, subject_noise(len(subj), lm.d_model, std, seed + s)):
            noised = record_run(lm, ids, comps)
        base = float(metric(noised.last_logits)[0])
        total += replay(lm, noised, all_rows, {"clean": clean.acts}, metric, progress=progress) - base
        corrupt_total += base
    effects, offset = {}, 0
    for k in kinds:
        n = len(rows_by_kind[k])
        effects[k] = (total[offset:offset + n] / samples).reshape(lm.n_layers, len(ids))
        offset += n
    return TraceResult(
        tokens=[str(t) for t in lm.tokenizer.convert_ids_to_tokens(ids)], subject_positions=subj,
        answer=str(lm.tokenizer.decode([answer_id])), answer_id=answer_id, metric="prob" if foil is None else "logit_diff",
        clean_metric=float(metric(clean.last_logits)[0]), corrupt_metric=corrupt_total / samples, effects=effects,
        noise_std=std, window=window, resid_window=resid_window, samples=samples, seconds=time.perf_counter() - start,
    )
