"""Linear condition probes on prompt representations: difference-in-means or logistic regression.

A probe reads the residual stream at one or more layers, pools each prompt's *real* tokens
(left padding is never read), and scores ``sum_k w_k . x_k + b``. Two poolings:

* ``tail``: the mean of the last ``n_read`` tokens (``n_read=1``: the last token; for chat
  prompts ``n_read = n_post`` gives the post-instruction tokens);
* ``span``: the mean of the tokens between the first ``skip_head`` and the last ``skip_tail``
  of each prompt; with the chat template's prefix and post-instruction lengths
  (:func:`chat_span`) that is exactly the user's message.

:mod:`alignscope.steering.conditional` compares the score with a threshold to decide, per
prompt, whether to steer. :func:`probe_features` computes the pooled features offline with the
same pooling code the hooks use.

The logistic probe is trained in torch (full-batch L-BFGS on standardised features with an L2
penalty); the standardisation is folded back into ``weight``/``bias``, so scoring needs only
the raw activations.

Example:
    >>> head, tail = chat_span(lm.tokenizer)                                              # doctest: +SKIP
    >>> pool = Pooling("span", skip_head=head, skip_tail=tail)                           # doctest: +SKIP
    >>> pos = probe_features(lm, harmful, layers=(16, 20), pooling=pool)                 # doctest: +SKIP
    >>> neg = probe_features(lm, harmless, layers=(16, 20), pooling=pool)                # doctest: +SKIP
    >>> probe = fit_logistic_probe(pos, neg, layers=(16, 20), pooling=pool)              # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from alignscope.data.prompts import PromptSet
from alignscope.errors import InputError
from alignscope.hooks.read import Select, read
from alignscope.models.batches import Batch, encode_prompts, gather, pad_id, padded_batches
from alignscope.models.chat import encode_one, render_chat
from alignscope.models.loader import LoadedModel
from alignscope.sites import Site

POOLS = ("tail", "span")


@dataclass(frozen=True)
class Pooling:
    """Which real tokens of a prompt a probe averages.

    Attributes:
        kind: ``tail`` (last ``n_read`` tokens) or ``span`` (skip ``skip_head`` at the start and
            ``skip_tail`` at the end).
        n_read: tokens averaged by ``tail``.
        skip_head: tokens skipped at the start of each prompt by ``span``.
        skip_tail: tokens skipped at the end of each prompt by ``span``.
    """

    kind: str = "tail"
    n_read: int = 1
    skip_head: int = 0
    skip_tail: int = 0

    def __post_init__(self) -> None:
        if self.kind not in POOLS:
            raise InputError(f"unknown pooling {self.kind!r}; expected one of {', '.join(POOLS)}", field="pooling")
        if self.n_read < 1 or self.skip_head < 0 or self.skip_tail < 0:
            raise InputError(f"bad pooling sizes: n_read={self.n_read}, skip_head={self.skip_head}, skip_tail={self.skip_tail}",
                             field="pooling")

    def to_meta(self) -> dict[str, str]:
        """String metadata for intervention files."""
        return {"probe_pool": self.kind, "probe_n_read": str(self.n_read), "probe_skip_head": str(self.skip_head),
                "probe_skip_tail": str(self.skip_tail)}

    def weights(self, mask: torch.Tensor | None, batch: int, seq: int, device: torch.device) -> torch.Tensor:
        """``(batch, seq)`` float weights selecting the pooled real tokens (rows sum to 1)."""
        pos = torch.arange(seq, device=device).unsqueeze(0)
        if mask is None:
            start = torch.zeros(batch, 1, dtype=torch.long, device=device)
        else:
            m = mask[:, -seq:].to(device)
            start = (m != 0).long().argmax(dim=1, keepdim=True)  # first real token (left padding)
        tail = (pos >= seq - self.n_read) & (pos >= start)
        span = (pos >= start + self.skip_head) & (pos < seq - self.skip_tail)
        w = (tail if self.kind == "tail" else span).float()
        w[w.sum(1) == 0, -1] = 1.0  # a prompt too short for the span falls back to its last token
        return w / w.sum(1, keepdim=True)


def rms_normalise(x: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x / rms(x), rms(x))`` over the last dimension, in float32 (the alignment circuit's sensors read this)."""
    x = x.float()
    rms = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return x / rms, rms


def pool_tokens(act: Float[torch.Tensor, "b s d"], mask: torch.Tensor | None, pooling: Pooling, *,
                token_norm: bool = False) -> Float[torch.Tensor, "b d"]:
    """Pool ``act`` over the tokens ``pooling`` selects (float32); ``token_norm`` RMS-normalises each token first."""
    w = pooling.weights(mask, act.shape[0], act.shape[1], act.device)
    return torch.einsum("bs,bsd->bd", w, rms_normalise(act)[0] if token_norm else act.float())


def chat_span(tokenizer: Any, sample: str = "Hello there, how are you?") -> tuple[int, int]:
    """``(skip_head, skip_tail)`` that make a ``span`` pooling cover just the user's message in chat mode.

    ``skip_head`` counts the template tokens before the message (system prompt, user header);
    ``skip_tail`` is the number of post-instruction tokens.
    """
    text, user_end = render_chat(tokenizer, sample)
    user_start = user_end - len(sample)
    ids, n_post = encode_one(tokenizer, sample, chat=True)
    if getattr(tokenizer, "is_fast", False):
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        head = sum(1 for _, end in offsets if end <= user_start)
    else:
        head = len(tokenizer(text[:user_start], add_special_tokens=False)["input_ids"])
    return min(head, len(ids) - n_post - 1), n_post


@dataclass(frozen=True, eq=False)
class LinearProbe:
    """``score = sum_k weight[k] . pool(x_k) + bias`` over the pooled real tokens of a prompt.

    Attributes:
        weight: ``(n_probe_layers, d_model)``.
        bias: scalar offset.
        layers: the layers read, one per row of ``weight``.
        component: the site component read (``resid_pre`` by default).
        pooling: which real tokens are averaged (default: the last token).
        method: how it was made (``logistic``, ``mean_diff``), for provenance.
    """

    weight: Float[torch.Tensor, "k d_model"]
    bias: float
    layers: tuple[int, ...]
    component: str = "resid_pre"
    pooling: Pooling = Pooling()
    method: str = "logistic"

    def __post_init__(self) -> None:
        w = self.weight.detach().to("cpu", torch.float32)
        if w.ndim == 1:
            w = w.unsqueeze(0)
        if w.ndim != 2 or w.shape[0] != len(self.layers) or not self.layers:
            raise InputError(f"weight shape {tuple(self.weight.shape)} does not match {len(self.layers)} probe layers",
                             field="probe_weight")
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))
        object.__setattr__(self, "bias", float(self.bias))

    def score(self, features: Float[torch.Tensor, "n k d_model"]) -> Float[torch.Tensor, " n"]:
        """Scores of pooled features ``(n, k, d_model)`` (layers in ``self.layers`` order)."""
        w = self.weight.to(features.device, features.dtype)
        return torch.einsum("nkd,kd->n", features, w) + self.bias


def probe_features(
    lm: LoadedModel,
    prompts: PromptSet | Sequence[str],
    layers: Sequence[int],
    *,
    component: str = "resid_pre",
    pooling: Pooling = Pooling(),
    chat: bool = True,
    batch_size: int = 16,
    progress: bool = False,
    token_norm: bool = False,
) -> Float[torch.Tensor, "n k d_model"]:
    """Pooled activations at ``layers``, ``(n_prompts, k, d_model)`` float32 on CPU.

    Uses the same pooling code as the conditional-steering hooks, on left-padded batches
    stopped after the deepest layer read; ``token_norm`` RMS-normalises each token before pooling.
    """
    texts = prompts.texts if isinstance(prompts, PromptSet) else list(prompts)
    if not texts:
        raise InputError("no prompts given", field="prompts")
    order = list(dict.fromkeys(int(x) for x in layers))
    for layer in order:
        Site(layer, component).validate(lm)
    sites = [Site(x, component) for x in order]

    def features(batch: Batch) -> torch.Tensor:
        got = read(lm, sites, batch.input_ids, batch.attention_mask, stop_at_layer=max(order) + 1,
                   select=_pooler(batch.attention_mask, pooling, token_norm)).acts
        return torch.stack([got[site] for site in sites], dim=1)

    batches = padded_batches(encode_prompts(lm.tokenizer, texts, chat=chat), batch_size, pad_id(lm.tokenizer))
    out = gather(len(texts), ((b.index, features(b)) for b in tqdm(batches, desc="probe features", disable=not progress, leave=False)))
    return out[:, [order.index(int(x)) for x in layers]]


def _pooler(mask: torch.Tensor, pooling: Pooling, token_norm: bool = False) -> Select:
    """A read ``select`` that pools each activation over the batch's real tokens, on CPU."""
    def select(_site: Site, act: torch.Tensor) -> torch.Tensor:
        return pool_tokens(act.detach(), mask.to(act.device), pooling, token_norm=token_norm).cpu()
    return select


def mean_diff_probe(
    pos: Float[torch.Tensor, "n k d"], neg: Float[torch.Tensor, "m k d"], layers: Sequence[int],
    *, component: str = "resid_pre", pooling: Pooling = Pooling(),
) -> LinearProbe:
    """Unit difference-in-means direction per layer (averaged over layers), bias at the class midpoint."""
    _check_pair(pos, neg)
    diff = pos.double().mean(0) - neg.double().mean(0)
    weight = diff / diff.norm(dim=-1, keepdim=True).clamp_min(1e-12) / diff.shape[0]
    mid = 0.5 * (pos.double().mean(0) + neg.double().mean(0))
    bias = -float((weight * mid).sum())
    return LinearProbe(weight.float(), bias, tuple(layers), component, pooling, "mean_diff")


def fit_logistic_probe(
    pos: Float[torch.Tensor, "n k d"], neg: Float[torch.Tensor, "m k d"], layers: Sequence[int],
    *, component: str = "resid_pre", pooling: Pooling = Pooling(), l2: float = 0.1, max_iter: int = 300,
    neg_weights: torch.Tensor | None = None,
) -> LinearProbe:
    """L2-regularised logistic regression (positives: label 1), fitted with L-BFGS in float64.

    The loss is the class-balanced weighted log-loss on standardised features plus
    ``l2/2 * |w|^2``: positives share weight 1/2 equally, negatives share 1/2 in proportion to
    ``neg_weights`` (default equal; e.g. up-weight hard negatives such as harmless lookalikes).
    The returned probe works on raw activations.
    """
    _check_pair(pos, neg)
    x = torch.cat([pos, neg]).flatten(1).double()
    y = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).double()
    nw = torch.ones(len(neg), dtype=torch.float64) if neg_weights is None else neg_weights.double().flatten()
    if nw.shape[0] != len(neg) or bool((nw < 0).any()) or float(nw.sum()) <= 0:
        raise InputError(f"neg_weights must be {len(neg)} non-negative numbers with a positive sum", field="neg_weights")
    sample_w = torch.cat([torch.full((len(pos),), 0.5 / len(pos), dtype=torch.float64), 0.5 * nw / nw.sum()])
    mu, sigma = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mu) / sigma
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = z @ w + b
        loss = (sample_w * torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")).sum()
        loss = loss + 0.5 * l2 * (w * w).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    with torch.enable_grad():
        opt.step(closure)  # type: ignore[no-untyped-call]
    raw_w = w.detach() / sigma
    raw_b = float(b.detach() - (raw_w * mu).sum())
    return LinearProbe(raw_w.reshape(pos.shape[1], pos.shape[2]).float(), raw_b, tuple(layers), component, pooling, "logistic")


def average_probes(probes: Sequence[LinearProbe]) -> LinearProbe:
    """The probe whose score is the mean of ``probes``' scores (same layers, component and pooling)."""
    first = probes[0]
    if any(p.layers != first.layers or p.component != first.component or p.pooling != first.pooling for p in probes):
        raise InputError("probes to average must read the same layers, component and pooling", field="probes")
    weight = torch.stack([p.weight for p in probes]).mean(0)
    return LinearProbe(weight, sum(p.bias for p in probes) / len(probes), first.layers, first.component, first.pooling,
                       f"{first.method}-ensemble{len(probes)}")


def threshold_for_fpr(neg_scores: torch.Tensor, max_fpr: float) -> float:
    """The lowest threshold ``t`` (among the negatives' scores) whose false-positive rate ``mean(score > t)`` is <= ``max_fpr``."""
    if not 0 <= max_fpr < 1:
        raise InputError(f"max_fpr must be in [0, 1), got {max_fpr}", field="max_fpr")
    ordered = torch.sort(neg_scores.flatten().double(), descending=True).values
    allowed = int(max_fpr * len(ordered))  # this many negatives may score above the threshold
    return float(ordered[allowed])


def _check_pair(pos: torch.Tensor, neg: torch.Tensor) -> None:
    if pos.ndim != 3 or neg.ndim != 3 or pos.shape[1:] != neg.shape[1:]:
        raise InputError(f"expected features (n, k, d) with matching (k, d); got {tuple(pos.shape)} and {tuple(neg.shape)}",
                         field="features")
    if len(pos) == 0 or len(neg) == 0:
        raise InputError("both classes need at least one example", field="features")
