"""Train the alignment circuit (and/or LoRA adapters) on a frozen causal LM, resumably.

The base model's weights stay frozen. What trains is the :class:`~alignscope.steering.circuit.AlignmentCircuit`
(when ``module`` is on) and LoRA adapters through peft (when ``lora`` is set), by next-token
cross-entropy on the response tokens only: prompt tokens (chat-formatted) and padding carry
label -100. Examples that keep the model's own behaviour (self-distilled harmless and lookalike
answers) are scored by ``keep_loss``: ``kl`` (the default) is the KL divergence from the unsteered
model's full next-token distribution (the circuit detached, LoRA disabled) at every response
position, which is zero exactly when the edit leaves the model unchanged there; ``ce`` is
cross-entropy on the greedy answer, which also sharpens the distribution and so moves the model
even where it should not. AdamW, gradient accumulation, linear warm-up then linear decay, a seeded batch order.

Checkpoints: every ``checkpoint_every`` optimizer steps (and at the end) the trainable tensors,
the optimizer's moments and the loss curve are written to ``DIR/checkpoint/`` as safetensors
(no pickle), atomically, together with a fingerprint of the settings and the data. A run killed
at any moment resumes from the last checkpoint: the batch order depends only on the seed and the
epoch, and nothing is random after that, so on CPU the resumed run ends bit for bit where an
uninterrupted one does.

QLoRA: ``qlora: true`` loads the base in 4 bits (NF4, bf16 compute) with bitsandbytes and runs
peft's ``prepare_model_for_kbit_training``; without CUDA it is a clear error. This path has not
run on a GPU yet (see the README).

Example:
    >>> result = train(model, tokenizer, examples, TrainSettings(layer=15), out_dir="out/mac")  # doctest: +SKIP
    >>> result.circuit                                                                          # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from alignscope.errors import InputError
from alignscope.hooks.backends import NativeTarget
from alignscope.hooks.numerics import non_finite_error
from alignscope.hooks.prompt_ends import prompt_ends
from alignscope.io import atomic_write_json, read_safetensors, save_safetensors, sha256_json
from alignscope.models.batches import pad_id
from alignscope.models.chat import encode_one
from alignscope.models.native import strip_wrappers
from alignscope.models.registry import decoder_layers
from alignscope.steering.circuit import DEFAULT_AXES, GATES, PARAMETERS, AlignmentCircuit, check_hold, check_scope

log = logging.getLogger(__name__)

IGNORE = -100
GATE_PARAMETERS = tuple(name for name in PARAMETERS if name != "nudge")  # what the gates are computed from
CHECKPOINT = "checkpoint"
KEEP_LOSSES = ("kl", "ce")


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapters (peft) on ``target_modules`` of every decoder layer."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    lr: float = 5e-4


@dataclass(frozen=True)
class TrainSettings:
    """What to train and how.

    Attributes:
        module: train an alignment circuit (False: LoRA alone).
        layer: the circuit's layer (None: ``n_layers // 2``).
        axes: axis names (their number is the circuit's axis count).
        width: query/key width of the circuit's decision attention.
        gate: ``sigmoid`` or ``tanh``.
        lora: LoRA adapters to train as well (None: none).
        qlora: load the base in 4 bits (CUDA only) for LoRA.
        lr: the circuit's learning rate.
        epochs, batch_size, grad_accum, warmup_steps, seed: the optimisation schedule.
        max_length: examples are cut to this many tokens (the prompt's head is dropped first).
        checkpoint_every: optimizer steps between checkpoints.
        weight_decay: AdamW weight decay.
        keep_loss: how the examples that keep the model's behaviour are scored: ``kl`` (KL from the unsteered
            model's distribution) or ``ce`` (cross-entropy on the self-distilled answer).
        kl_weight: the weight of that KL term against the cross-entropy of the other examples.
        gate_weight: the weight of a direct supervision of one gate (0: none): the binary cross-entropy of the
            ``gate_axis`` gate at every scored position against 1 for the examples that should refuse and 0 for
            the others, summed like the token losses. The other losses reach the gate only through the nudge it
            scales; this one trains the gate as a classifier of the prompt.
        gate_axis: the axis whose gate is supervised.
        scope: which tokens the circuit nudges: ``all``, or ``response`` (the last prompt token and the response; see
            :mod:`alignscope.steering.circuit`). In training the prompt ends where the scored labels begin.
        freeze: circuit parameters (by name, see :data:`~alignscope.steering.circuit.PARAMETERS`) kept at their
            starting values. Freezing every parameter but ``nudge`` keeps a probe-started gate (``init``) exactly the
            probe, so that training only learns what each gate does, not when it opens.
        hold: the gates decided at the last prompt token act on the whole response (scope ``response`` only; see
            :mod:`alignscope.steering.circuit`). Left out of the settings' ``repr`` (which identifies a run's training
            stage) so that runs trained before it existed are reused; :func:`settings_key` adds it when set.
    """

    module: bool = True
    layer: int | None = None
    axes: tuple[str, ...] = DEFAULT_AXES
    width: int = 16
    gate: str = "sigmoid"
    lora: LoraSettings | None = None
    qlora: bool = False
    lr: float = 3e-2
    epochs: int = 2
    batch_size: int = 8
    grad_accum: int = 1
    warmup_steps: int = 10
    seed: int = 0
    max_length: int = 96
    checkpoint_every: int = 25
    weight_decay: float = 0.0
    keep_loss: str = "kl"
    kl_weight: float = 1.0
    gate_weight: float = 0.0
    gate_axis: str = "harmless"
    freeze: tuple[str, ...] = ()
    scope: str = "all"
    hold: bool = field(default=False, repr=False)

    def check(self, n_layers: int, module_names: set[str]) -> TrainSettings:
        """These settings with the layer resolved; errors name the field."""
        if not self.module and self.lora is None:
            raise InputError("nothing to train: set module: true or a lora: section", field="module")
        if not self.axes:
            raise InputError("expected at least one axis (got an axis count of 0)", field="axes")
        if self.gate not in GATES:
            raise InputError(f"unknown gate form {self.gate!r}; expected one of {', '.join(GATES)}", field="gate")
        check_scope(self.scope)
        if self.hold and not self.module:
            raise InputError("holding the gates needs the circuit (module: true)", field="hold")
        check_hold(self.hold, self.scope)
        if self.keep_loss not in KEEP_LOSSES:
            raise InputError(f"unknown keep_loss {self.keep_loss!r}; expected one of {', '.join(KEEP_LOSSES)}", field="keep_loss")
        if not (math.isfinite(self.kl_weight) and self.kl_weight >= 0):
            raise InputError(f"expected a finite weight >= 0, got {self.kl_weight!r}", field="kl_weight")
        if not (math.isfinite(self.gate_weight) and self.gate_weight >= 0):
            raise InputError(f"expected a finite weight >= 0, got {self.gate_weight!r}", field="gate_weight")
        if self.gate_weight > 0:
            if not self.module:
                raise InputError("gate supervision needs the circuit (module: true)", field="gate_weight")
            if self.gate_axis not in self.axes:
                raise InputError(f"no axis named {self.gate_axis!r}; the axes are {', '.join(self.axes)}", field="gate_axis")
            if self.gate != "sigmoid":
                raise InputError(f"gate supervision needs sigmoid gates (a probability), got {self.gate!r}", field="gate")
            if set(GATE_PARAMETERS) <= set(self.freeze):
                raise InputError("gate supervision trains the gate, but every parameter it depends on is frozen "
                                 f"({', '.join(GATE_PARAMETERS)})", field="gate_weight")
        unknown = [name for name in self.freeze if name not in PARAMETERS]
        if unknown:
            raise InputError(f"no circuit parameter named {', '.join(unknown)}; expected some of {', '.join(PARAMETERS)}",
                             field="freeze")
        if self.freeze and not self.module:
            raise InputError("freezing circuit parameters needs the circuit (module: true)", field="freeze")
        if set(PARAMETERS) <= set(self.freeze) and self.lora is None:
            raise InputError("every circuit parameter is frozen and there is no LoRA: nothing to train", field="freeze")
        layer = n_layers // 2 if self.layer is None else self.layer
        if not 0 <= layer < n_layers:
            raise InputError(f"layer {layer} is out of range; the model has layers 0..{n_layers - 1}", field="layer")
        for name in ("epochs", "batch_size", "grad_accum", "width", "max_length", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise InputError(f"expected a positive integer, got {getattr(self, name)!r}", field=name)
        if self.lora is not None:
            missing = [m for m in self.lora.target_modules if m not in module_names]
            if missing:
                raise InputError(f"the model has no module named {', '.join(missing)}; its linear layers are "
                                 f"{', '.join(sorted(module_names))}", field="lora.target_modules")
            if self.lora.r < 1:
                raise InputError(f"expected a positive rank, got {self.lora.r}", field="lora.r")
        return TrainSettings(**{**asdict(self), "layer": layer, "lora": self.lora, "freeze": tuple(self.freeze)})


# Settings added after checkpoints existed, at the values that behave as those did: left out of a checkpoint's identity at
# these values, so that earlier checkpoints resume (a run's training stages use settings_key).
LATER_DEFAULTS: dict[str, Any] = {"scope": "all", "hold": False}


def identity(s: TrainSettings) -> dict[str, Any]:
    """The settings that identify a training checkpoint: every field, less those at their :data:`LATER_DEFAULTS`
    value."""
    return {k: v for k, v in asdict(s).items() if not (k in LATER_DEFAULTS and v == LATER_DEFAULTS[k])}


def settings_key(s: TrainSettings) -> list[Any]:
    """What identifies a training among a run's stages: the settings' ``repr``, and the fields left out of it (``hold``,
    so that stages recorded before it existed are reused) where they differ from their :data:`LATER_DEFAULTS` value."""
    hidden = {f.name: getattr(s, f.name) for f in fields(s) if not f.repr and getattr(s, f.name) != LATER_DEFAULTS[f.name]}
    return [repr(s), *([hidden] if hidden else [])]


@dataclass(frozen=True)
class Encoded:
    """One training example as token ids and labels (-100 on the prompt)."""

    ids: list[int]
    labels: list[int]


def encode_example(tokenizer: PreTrainedTokenizerBase, prompt: str, response: str, *, chat: bool, max_length: int) -> Encoded:
    """Chat-formatted prompt + response + end-of-turn; only the response (and its end) is scored.

    Too long an example keeps its response and drops the start of its prompt.
    """
    prompt_ids, _ = encode_one(tokenizer, prompt, chat=chat)
    end = tokenizer.eos_token_id
    response_ids = list(tokenizer(response, add_special_tokens=False)["input_ids"]) + ([] if end is None else [int(end)])
    response_ids = response_ids[: max_length - 1]
    prompt_ids = prompt_ids[max(0, len(prompt_ids) + len(response_ids) - max_length):]
    return Encoded(prompt_ids + response_ids, [IGNORE] * len(prompt_ids) + response_ids)


def last_prompt_columns(labels: torch.Tensor) -> torch.Tensor:
    """Per row of right-padded ``labels``, the column of the last prompt token (just before the first scored label)."""
    return ((labels != IGNORE).long().argmax(-1) - 1).clamp(min=0)


def right_padded(batch: Sequence[Encoded], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ids, attention_mask, labels)`` of a right-padded batch."""
    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        ids[row, :len(e.ids)] = torch.tensor(e.ids)
        labels[row, :len(e.labels)] = torch.tensor(e.labels)
        mask[row, :len(e.ids)] = 1
    return ids, mask, labels


@dataclass
class TrainResult:
    """What training produced: the circuit (if any), the peft model (if LoRA), the loss curve and the costs."""

    circuit: AlignmentCircuit | None
    model: torch.nn.Module
    losses: list[float]
    steps: int
    seconds: float
    trainable_params: int
    total_params: int
    resumed_from: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def trainable_pct(self) -> float:
        """Trainable parameters as a percentage of the base model's."""
        return 100.0 * self.trainable_params / self.total_params

    def summary(self) -> dict[str, Any]:
        """``training.json``: settings, the loss curve, parameter counts and timing."""
        return {"settings": self.settings, "losses": self.losses, "steps": self.steps, "train_seconds": round(self.seconds, 3),
                "trainable_params": self.trainable_params, "trainable_pct": self.trainable_pct,
                "total_params": self.total_params, "resumed_from_step": self.resumed_from}


def linear_names(model: torch.nn.Module) -> set[str]:
    """The names of the model's linear layers, last path segment only (what LoRA's ``target_modules`` match).

    Works on a plain HF model and on a bridge-wrapped one (its ``_original_component`` segments are skipped).
    """
    # strip_wrappers drops "<wrapper>." segments; the trailing "." lets it drop a final one too
    return {strip_wrappers(f"{name}.").rstrip(".").rsplit(".", 1)[-1]
            for name, module in model.named_modules() if isinstance(module, torch.nn.Linear) and name}


def add_lora(model: torch.nn.Module, lora: LoraSettings, *, kbit: bool) -> torch.nn.Module:
    """Wrap ``model`` with trainable LoRA adapters (peft); ``kbit`` prepares a 4-bit base first."""
    if kbit:
        model = prepare_model_for_kbit_training(model)
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=list(lora.target_modules),
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)  # type: ignore[no-any-return]


def _schedule(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    return factor


def _batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


class Checkpoint:
    """The checkpoint directory: trainable tensors and optimizer moments (safetensors) plus state (JSON)."""

    def __init__(self, out_dir: Path, fingerprint: str) -> None:
        self.dir = out_dir / CHECKPOINT
        self.fingerprint = fingerprint

    def save(self, params: dict[str, torch.nn.Parameter], opt: torch.optim.Optimizer, step: int, losses: list[float],
             seconds: float) -> None:
        """Write the trainable tensors and moments, then the step, the losses and the training seconds so far."""
        tensors = {f"param/{k}": p.detach().cpu().contiguous() for k, p in params.items()}
        for k, p in params.items():
            st = opt.state.get(p, {})
            for name in ("exp_avg", "exp_avg_sq"):
                if name in st:
                    tensors[f"{name}/{k}"] = st[name].detach().cpu().contiguous()
            if "step" in st:
                tensors[f"step/{k}"] = torch.as_tensor(st["step"]).detach().cpu().reshape(1).float()
        save_safetensors(self.dir / "state.safetensors", tensors, {"step": str(step)})
        atomic_write_json(self.dir / "progress.json", {"fingerprint": self.fingerprint, "step": step, "losses": losses,
                                                       "seconds": seconds})

    def load(self, params: dict[str, torch.nn.Parameter], opt: torch.optim.Optimizer) -> tuple[int, list[float], float] | None:
        """Restore a matching checkpoint: ``(step, losses, training seconds so far)``; None when there is none or it is for
        other settings or data."""
        progress = self.dir / "progress.json"
        if not progress.is_file():
            return None
        state = json.loads(progress.read_text(encoding="utf-8"))
        if state.get("fingerprint") != self.fingerprint:
            log.warning("%s holds a checkpoint of other settings or data; starting over", self.dir)
            return None
        tensors, meta = read_safetensors(self.dir / "state.safetensors", "training checkpoint")
        if int(meta.get("step", -1)) != state["step"]:  # the two files of different saves: the kill fell between them
            log.warning("%s: checkpoint files disagree on the step; starting over", self.dir)
            return None
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(tensors[f"param/{k}"].to(p.device, p.dtype))
                if f"exp_avg/{k}" in tensors:
                    opt.state[p] = {"step": tensors[f"step/{k}"].reshape(()).clone(),
                                    "exp_avg": tensors[f"exp_avg/{k}"].to(p.device, p.dtype),
                                    "exp_avg_sq": tensors[f"exp_avg_sq/{k}"].to(p.device, p.dtype)}
        return int(state["step"]), list(state["losses"]), float(state.get("seconds", 0.0))  # no seconds: an older checkpoint


def keep_kl(logits: torch.Tensor, reference: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``sum KL(reference || logits)`` over the scored positions (``labels != -100``) of shifted ``(batch, seq, vocab)`` logits."""
    scored = labels != IGNORE
    return torch.nn.functional.kl_div(logits[scored].float().log_softmax(-1), reference[scored].float().log_softmax(-1),
                                      log_target=True, reduction="sum")


def gate_bce(gates: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``sum BCE(gate, target of its row)`` over the scored positions (``labels != -100``) of shifted ``(batch, seq)`` gates."""
    scored = labels != IGNORE
    wanted = targets.to(gates.dtype)[:, None].expand_as(gates)
    return torch.nn.functional.binary_cross_entropy(gates[scored].clamp(1e-6, 1 - 1e-6), wanted[scored], reduction="sum")


def train(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, examples: Sequence[tuple[str, str]], settings: TrainSettings,
          *, out_dir: str | Path, chat: bool = True, progress: bool = False, max_steps: int | None = None,
          init: dict[str, torch.Tensor] | None = None, on_step: Callable[[int, float], None] | None = None,
          keep: Sequence[bool] | None = None, refuse: Sequence[bool] | None = None) -> TrainResult:
    """Train on ``(prompt, response)`` pairs; ``model`` is a plain HF causal LM (frozen here).

    Args:
        model: the base model (its weights are never changed; LoRA wraps it).
        tokenizer: its tokenizer.
        examples: prompts with their target responses.
        settings: what to train and how (checked against the model first).
        out_dir: where the checkpoint lives (a run with the same settings and data resumes there).
        chat: chat-format the prompts.
        progress: a progress bar with the loss.
        max_steps: stop after this many optimizer steps (a checkpoint is written there).
        init: starting values of circuit parameters by name (e.g. ``axes``, the sensor directions, from contrastive
            directions; see :mod:`alignscope.recipes.mac_init`); the others start as in a fresh circuit.
        on_step: called with ``(step, loss)`` after every optimizer step.
        keep: per example, whether it keeps the model's own behaviour (scored by ``settings.keep_loss``;
            None: none does).
        refuse: per example, whether it should refuse (the gate target of ``settings.gate_weight``; needed when
            that weight is above 0).

    Raises:
        InputError: bad settings (the message names the field), no examples, or ``keep`` or ``refuse`` of another
            length.
    """
    start = time.perf_counter()
    if not examples:
        raise InputError("no training examples", field="data")
    keep = [False] * len(examples) if keep is None else [bool(k) for k in keep]
    if len(keep) != len(examples):
        raise InputError(f"{len(keep)} keep flags for {len(examples)} examples", field="keep")
    if settings.gate_weight > 0 and (refuse is None or len(refuse) != len(examples)):
        raise InputError(f"gate supervision needs one refuse flag per example ({len(examples)}), got "
                         f"{'none' if refuse is None else len(refuse)}", field="refuse")
    n_layers = len(decoder_layers(model))
    s = settings.check(n_layers, linear_names(model))
    assert s.layer is not None
    torch.manual_seed(s.seed)
    for p in model.parameters():
        p.requires_grad_(False)
    total_params = sum(p.numel() for p in model.parameters())
    device = next(model.parameters()).device
    if s.lora is not None:
        model = add_lora(model, s.lora, kbit=s.qlora)
    base: torch.nn.Module = getattr(model, "get_base_model", lambda: model)()
    circuit = None
    if s.module:
        circuit = AlignmentCircuit.new(int(getattr(base, "config").hidden_size), s.layer, axis_names=s.axes, width=s.width,  # noqa: B009
                                       gate=s.gate, scope=s.scope, hold=s.hold)
        circuit.net.load_start(init or {})
        circuit.net.to(device)
    params = {f"lora/{k}": p for k, p in model.named_parameters() if p.requires_grad}
    if circuit is not None:
        for k, p in circuit.net.named_parameters():
            p.requires_grad_(k not in s.freeze)
        params.update({f"mac/{k}": p for k, p in circuit.net.named_parameters() if k not in s.freeze})
    groups = [{"params": [p for k, p in params.items() if k.startswith("mac/")], "lr": s.lr},
              {"params": [p for k, p in params.items() if k.startswith("lora/")], "lr": s.lora.lr if s.lora else s.lr}]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=s.weight_decay)
    encoded = [encode_example(tokenizer, p, r, chat=chat, max_length=s.max_length) for p, r in examples]
    per_epoch = math.ceil(len(encoded) / s.batch_size)
    total_steps = math.ceil(per_epoch * s.epochs / s.grad_accum)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(min(s.warmup_steps, total_steps), total_steps))
    recorded = identity(s)
    ckpt = Checkpoint(Path(out_dir), sha256_json({"settings": recorded, "data": [(e.ids, e.labels) for e in encoded],
                                                  "init": None if not init else {k: v.tolist() for k, v in sorted(init.items())}, "chat": chat,
                                                  "keep": keep if any(keep) else None,
                                                  "refuse": None if s.gate_weight == 0 or refuse is None else [bool(r) for r in refuse]}))
    resumed = ckpt.load(params, opt)
    step, losses, before = resumed if resumed is not None else (0, [], 0.0)
    with warnings.catch_warnings():  # fast-forwarding the schedule of a resumed run is not the misuse torch warns about
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before `optimizer\.step\(\)`")
        for _ in range(step):
            sched.step()
    handle = circuit.attach_to(base) if circuit is not None else None

    def unsteered(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Shifted logits of the model as it was: the circuit detached, LoRA disabled."""
        nonlocal handle
        if handle is not None:
            handle.remove()
        try:
            off = getattr(model, "disable_adapter")() if s.lora is not None else nullcontext()  # noqa: B009
            with torch.no_grad(), off:
                return model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()  # type: ignore[no-any-return]
        finally:
            handle = circuit.attach_to(base) if circuit is not None else None

    pad = pad_id(tokenizer)
    axis = s.axes.index(s.gate_axis) if s.gate_weight > 0 else 0
    model.train()
    bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", disable=not progress)
    try:
        micro = [(e, b) for e in range(s.epochs) for b in _batches(len(encoded), s.batch_size, s.seed, e)]
        limit = total_steps if max_steps is None else min(total_steps, max_steps)
        while step < limit:
            chunk = micro[step * s.grad_accum:(step + 1) * s.grad_accum]
            n_tokens = sum(sum(1 for x in encoded[i].labels[1:] if x != IGNORE) for _, b in chunk for i in b)
            total = 0.0
            for _, rows in chunk:
                ids, mask, labels = (t.to(device) for t in right_padded([encoded[i] for i in rows], pad))
                with prompt_ends(last_prompt_columns(labels)):
                    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
                lab = labels[:, 1:]
                kept = torch.tensor([keep[i] and s.keep_loss == "kl" for i in rows], device=device)
                loss_sum = torch.nn.functional.cross_entropy(logits.flatten(0, 1), lab.masked_fill(kept[:, None], IGNORE).flatten(),
                                                             ignore_index=IGNORE, reduction="sum")
                if s.gate_weight > 0:  # before the unsteered pass below, which re-attaches the circuit with a fresh handle
                    assert handle is not None and handle.last_gates is not None and refuse is not None  # checked on entry
                    targets = torch.tensor([bool(refuse[i]) for i in rows], device=device)
                    loss_sum = loss_sum + s.gate_weight * gate_bce(handle.last_gates[:, :-1, axis], lab, targets)
                if bool(kept.any()):
                    loss_sum = loss_sum + s.kl_weight * keep_kl(logits[kept], unsteered(ids[kept], mask[kept]), lab[kept])
                if not torch.isfinite(loss_sum):  # stop before the optimizer writes NaN into weights; the last checkpoint stays
                    raise non_finite_error(NativeTarget(base), n_layers, ids, mask, what=f"the training loss at step {step + 1}",
                                           dtype=next(base.parameters()).dtype)
                (loss_sum / max(1, n_tokens)).backward()
                total += float(loss_sum.detach())
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            losses.append(total / max(1, n_tokens))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if on_step is not None:
                on_step(step, losses[-1])
            if step % s.checkpoint_every == 0 or step == limit:
                ckpt.save(params, opt, step, losses, before + time.perf_counter() - start)
    finally:
        bar.close()
        if handle is not None:
            handle.remove()
        model.eval()
    trainable = sum(p.numel() for p in params.values())
    settings_json = {**asdict(s), "lora": None if s.lora is None else asdict(s.lora)}
    return TrainResult(circuit, model, losses, step, before + time.perf_counter() - start, trainable, total_params,
                       resumed[0] if resumed else 0, settings_json)
