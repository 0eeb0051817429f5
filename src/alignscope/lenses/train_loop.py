"""Training loop for the tuned lens: one frozen forward per batch, all translators in one step.

Why it is fast on a CPU:

* The model runs once per batch without grad and without a graph; every layer's
  ``resid_post`` and the final logits are kept. The final log-probabilities (the target) are
  computed once per batch, not once per layer.
* All translators train together: one batched matmul translates every layer, one norm and one
  read-out cover all layers, and one backward pass updates them all.
* The read-out uses a shared *candidate vocabulary* per batch: the union of each position's
  top-``target_top_k`` target tokens, plus ``negatives`` tokens drawn uniformly from the rest
  whose softmax mass is counted with importance weight ``|rest| / negatives`` (sampled softmax).
  That replaces a 49k-column unembedding with a few thousand columns. Training uses this
  estimate of the KL; evaluation (:mod:`alignscope.lenses.lens_eval`) always uses the exact,
  full-vocabulary KL.
* The read-out matmuls run in bfloat16 autocast (``autocast=True``, as the ``tuned-lens``
  library does); targets and softmaxes stay in float32.

Checkpoints (safetensors: translators, Adam moments, step) are written every
``checkpoint_every`` steps; a rerun with the same model weights (whatever the name it was loaded
under), corpus and config resumes from the last; any other run is refused (:mod:`alignscope.resume`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from safetensors import safe_open
from tqdm.auto import tqdm

from alignscope.errors import InputError, NumericalError
from alignscope.io import save_safetensors, sha256_json
from alignscope.lenses.logit_lens import resid_posts
from alignscope.lenses.tuned_lens import TunedLens
from alignscope.lenses.unembed import Unembedder
from alignscope.models.identity import model_identity
from alignscope.models.loader import LoadedModel
from alignscope.resume import same_run

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.safetensors"


@dataclass(frozen=True)
class TrainConfig:
    """Tuned-lens training settings.

    Attributes:
        steps: optimiser steps.
        batch_seqs: chunks per step (tokens per step = ``batch_seqs * seq_len``).
        seq_len: tokens per chunk.
        lr: Adam learning rate (linear warm-up over the first 5% of steps, then cosine decay to 0).
        target_top_k: top target tokens per position kept in the candidate vocabulary (0: full vocabulary).
        negatives: uniformly sampled other tokens for the softmax normaliser.
        autocast: run the read-out matmuls in bfloat16 autocast.
        seed: data order and negative sampling seed.
        token_block: positions per backward pass (bounds memory).
        checkpoint_every: steps between checkpoints (0: none).
    """

    steps: int = 120
    batch_seqs: int = 8
    seq_len: int = 128
    lr: float = 2e-3
    target_top_k: int = 24
    negatives: int = 1536
    autocast: bool = True
    seed: int = 0
    checkpoint_every: int = 25
    token_block: int = 256

    def __post_init__(self) -> None:
        for name in ("steps", "batch_seqs", "seq_len"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}", field=name)
        if not self.lr > 0:
            raise InputError(f"lr must be > 0, got {self.lr}", field="lr")
        if self.target_top_k < 0 or self.negatives < 0:
            raise InputError("target_top_k and negatives must be >= 0", field="target_top_k")


@dataclass(frozen=True)
class TrainReport:
    """What a training run did: ``tokens``, ``seconds`` and ``tokens_per_second`` count this call only; ``losses`` holds
    every step's loss since step 0, those of an interrupted run it resumed included."""

    steps: int
    resumed_from: int
    tokens: int
    seconds: float
    tokens_per_second: float
    final_loss: float
    losses: list[float]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def candidates(
    target_logp: Float[torch.Tensor, "tokens vocab"], config: TrainConfig, generator: torch.Generator,
) -> tuple[torch.Tensor, int, float]:
    """Candidate vocabulary: ``(ids, n_top, log_weight)``; ids are the top tokens, then the sampled negatives."""
    vocab = target_logp.shape[-1]
    device = target_logp.device
    if config.target_top_k == 0 or config.target_top_k * 4 >= vocab:
        return torch.arange(vocab, device=device), vocab, 0.0
    top = target_logp.topk(config.target_top_k, dim=-1).indices.unique()
    rest_mask = torch.ones(vocab, dtype=torch.bool, device=device)
    rest_mask[top] = False
    rest = rest_mask.nonzero().squeeze(1)
    n_neg = min(config.negatives, rest.numel())
    if n_neg == 0:
        return top, top.numel(), 0.0
    neg = rest[torch.randperm(rest.numel(), generator=generator)[:n_neg].to(device)]
    return torch.cat([top, neg]), top.numel(), math.log(rest.numel() / n_neg)


def sampled_kl(
    normed: Float[torch.Tensor, "layers tokens d"], target_logp: Float[torch.Tensor, "tokens vocab"],
    unembed: Unembedder, config: TrainConfig, generator: torch.Generator,
) -> Float[torch.Tensor, " layers"]:
    """Mean over tokens of ``KL(target || lens)`` per layer, over the candidate vocabulary.

    ``KL = sum_v p_v log p_v - sum_v p_v s_v + P * logsumexp(s)`` over the top tokens ``v``
    (``P`` their target mass); without a soft-cap the middle term is ``normed · (p @ W_top)``,
    so the only ``(layers, tokens, candidates)`` work is the matmul and the logsumexp. The
    normaliser counts each sampled negative ``|rest| / negatives`` times. With
    ``config.target_top_k == 0`` this is the exact full-vocabulary KL.
    """
    cand, n_top, log_w = candidates(target_logp, config, generator)
    w = unembed.weight[cand].float()
    offset = unembed.bias[cand].float()
    if log_w:
        offset = offset.clone()
        offset[n_top:] += log_w
    p_logp = target_logp[:, cand[:n_top]]
    p = p_logp.exp()
    with torch.autocast(normed.device.type, dtype=torch.bfloat16, enabled=config.autocast):
        raw = torch.matmul(normed, w.T)
    if unembed.softcap is None:
        scores = raw.float() + offset
        cross = (normed * (p @ w[:n_top])).sum(-1) + p @ offset[:n_top]
    else:  # the cap is non-linear: take the top-token scores explicitly (log-weights go on after capping)
        capped = unembed.cap(raw.float() + unembed.bias[cand].float())
        scores = capped + (offset - unembed.bias[cand].float())
        cross = (scores[..., :n_top] * p).sum(-1)
    kl = (p * p_logp).sum(-1) - cross + p.sum(-1) * torch.logsumexp(scores, dim=-1)
    return kl.mean(-1)


def train_step(
    lm: LoadedModel, lens: TunedLens, unembed: Unembedder, ids: Int[torch.Tensor, "batch seq"],
    config: TrainConfig, generator: torch.Generator,
) -> Float[torch.Tensor, " layers"]:
    """Accumulate gradients for one batch; returns the (detached) loss per translated layer.

    One frozen forward pass gives every layer's residual and the target; the translators then
    train on blocks of ``token_block`` positions, each with its own backward pass, so memory
    stays bounded by one block.
    """
    with torch.autocast(lm.device.type, dtype=torch.bfloat16, enabled=config.autocast):
        resid, logits = resid_posts(lm, ids)
    n = lens.n_layers - 1
    target = torch.log_softmax(logits.float().reshape(-1, logits.shape[-1]), dim=-1)
    x = resid[:n].float().reshape(n, -1, resid.shape[-1])
    total = torch.zeros(n, device=x.device)
    n_tok = target.shape[0]
    for lo in range(0, n_tok, config.token_block):
        block = slice(lo, lo + config.token_block)
        with torch.autocast(lm.device.type, dtype=torch.bfloat16, enabled=config.autocast):
            translated = lens.translate(x[:, block])
        per_layer = sampled_kl(unembed.norm_detached(translated.float()), target[block], unembed, config, generator)
        weight = target[block].shape[0] / n_tok
        (per_layer.sum() * weight).backward()
        total += per_layer.detach() * weight
    return total


def _lr_factor(step: int, total: int) -> float:
    warm = max(1, total // 20)
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def fingerprint(lm: LoadedModel, corpus_sha: str, n_chunks: int, config: TrainConfig) -> str:
    """Identifies a run: the model's weights (:func:`~alignscope.models.identity.resume_key`), corpus and config."""
    return sha256_json({"model": model_identity(lm).key(), "corpus": corpus_sha, "n_chunks": n_chunks, "config": asdict(config)})


def train_tuned_lens(
    lm: LoadedModel, chunks: Int[torch.Tensor, "n seq"], out_dir: str | Path, *, config: TrainConfig = TrainConfig(),
    corpus_sha: str = "", progress: bool = False, max_steps: int | None = None,
) -> tuple[TunedLens, TrainReport]:
    """Train a tuned lens on token chunks, checkpointing into ``out_dir`` and resuming from it.

    Args:
        lm: the (frozen) model.
        chunks: ``(n_chunks, seq_len)`` token ids (see :func:`alignscope.lenses.corpus.token_chunks`).
        out_dir: where checkpoints go (the caller saves the final lens).
        config: :class:`TrainConfig`.
        corpus_sha: identifies the corpus in the checkpoint fingerprint.
        progress: show a tqdm bar on stderr.
        max_steps: stop after this many steps in this call (for tests and interrupted runs).

    Returns:
        The lens and a :class:`TrainReport`.

    Raises:
        ResumeMismatchError: ``out_dir`` holds a checkpoint of a different run.
    """
    out = Path(out_dir)
    lens = TunedLens.for_model(lm)
    opt = torch.optim.Adam(lens.parameters(), lr=config.lr)
    fp = fingerprint(lm, corpus_sha, chunks.shape[0], config)
    start, losses = load_checkpoint(out / CHECKPOINT_FILE, lens, opt, fp)
    unembed = Unembedder.from_model(lm)
    order = _order(chunks.shape[0], config)
    gen = torch.Generator()
    stop = config.steps if max_steps is None else min(config.steps, start + max_steps)
    t0 = time.perf_counter()
    bar = tqdm(range(start, stop), initial=start, total=config.steps, desc="tuned lens", disable=not progress)
    for step in bar:
        idx = order[(step * config.batch_seqs + torch.arange(config.batch_seqs)) % order.numel()]
        for group in opt.param_groups:
            group["lr"] = config.lr * _lr_factor(step, config.steps)
        opt.zero_grad(set_to_none=True)
        gen.manual_seed(step_seed(config.seed, step))  # per step, so a resumed run samples as an uninterrupted one does
        per_layer = train_step(lm, lens, unembed, chunks[idx], config, gen)
        if not torch.isfinite(per_layer).all():  # stop before the optimizer writes NaN into the translators
            bad = int(torch.nonzero(~torch.isfinite(per_layer))[0])
            raise NumericalError(f"non-finite tuned-lens loss (KL) at step {step + 1}: the translator of layer {bad} resid_post "
                                 f"produced inf/NaN (lower --lr, or use --dtype float32); the last checkpoint is kept")
        opt.step()
        losses.append(float(per_layer.mean()))
        bar.set_postfix(kl=f"{losses[-1]:.3f}")
        if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
            save_checkpoint(out / CHECKPOINT_FILE, lens, opt, step + 1, fp, losses)
    seconds = time.perf_counter() - t0
    tokens = (stop - start) * config.batch_seqs * config.seq_len
    if stop > start and stop < config.steps:
        save_checkpoint(out / CHECKPOINT_FILE, lens, opt, stop, fp, losses)
    report = TrainReport(stop, start, tokens, seconds, tokens / seconds if seconds else 0.0,
                         losses[-1] if losses else float("nan"), losses)
    return lens, report


def step_seed(seed: int, step: int) -> int:
    """The sampling seed of one training step: a function of the run's seed and the step alone (not of where a run resumed)."""
    return seed * 1_000_003 + step


def _order(n_chunks: int, config: TrainConfig) -> torch.Tensor:
    """A fixed shuffled order of chunks (epochs repeat it), so a resumed run sees the same batches."""
    return torch.randperm(n_chunks, generator=torch.Generator().manual_seed(config.seed))


def save_checkpoint(path: Path, lens: TunedLens, opt: torch.optim.Optimizer, step: int, fp: str, losses: list[float]) -> None:
    """Translators, Adam moments, the step and the losses so far, atomically, as safetensors."""
    tensors = dict(lens.state_tensors())
    for name, param in (("weight", lens.weight), ("bias", lens.bias)):
        state = opt.state.get(param, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                tensors[f"adam.{name}.{key}"] = state[key]
        if "step" in state:
            tensors[f"adam.{name}.step"] = torch.as_tensor(state["step"], dtype=torch.float32).reshape(1)
    save_safetensors(path, tensors, {"step": str(step), "fingerprint": fp, "losses": json.dumps(losses)})
    log.info("checkpoint at step %d -> %s", step, path)


def load_checkpoint(path: Path, lens: TunedLens, opt: torch.optim.Optimizer, fp: str) -> tuple[int, list[float]]:
    """Restore a checkpoint into ``lens`` and ``opt``; returns the step to continue from and the losses of the steps before it
    (``(0, [])`` if there is none)."""
    if not path.is_file():
        return 0, []
    with safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata() or {})
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    same_run(meta.get("fingerprint", ""), fp, where=path, what="a tuned-lens checkpoint", inputs="model weights or dtype, corpus or settings")
    device = lens.weight.device
    with torch.no_grad():
        lens.weight.copy_(tensors["weight"])
        lens.bias.copy_(tensors["bias"])
    for name, param in (("weight", lens.weight), ("bias", lens.bias)):
        if f"adam.{name}.exp_avg" in tensors:
            opt.state[param] = {
                "step": tensors[f"adam.{name}.step"].reshape(()).clone(),
                "exp_avg": tensors[f"adam.{name}.exp_avg"].to(device),
                "exp_avg_sq": tensors[f"adam.{name}.exp_avg_sq"].to(device),
            }
    step = int(meta.get("step", "0"))
    if "losses" not in meta:  # written before checkpoints kept the losses: the summary's curve starts here
        log.warning("%s holds no losses; the loss curve will start at step %d", path, step)
    losses = [float(x) for x in json.loads(meta.get("losses", "[]"))]
    if "losses" in meta and len(losses) != step:
        raise InputError(f"the checkpoint holds {len(losses)} losses for {step} steps; delete it to start over", path=path)
    log.info("resuming tuned-lens training from step %d (%s)", step, path)
    return step, losses
