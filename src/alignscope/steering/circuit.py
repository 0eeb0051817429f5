"""The alignment circuit: a small trainable module that senses alignment axes and nudges the residual stream.

It sits at one site (``resid_post`` of one layer, by default about halfway up) of a frozen model
and works in three steps on each token's hidden state ``h``:

1. **Sensors.** ``s = rms_normalise(h) @ axes.T + axis_bias``: one score per axis (by default
   ``helpful``, ``harmless``, ``honest``), initialised from contrastive directions and trained.
2. **Decision.** A one-head mini-attention: the query is a projection of the token's normalised
   state, the keys are projections of the axis scores of this and every earlier real token
   (padding is never attended to), the values are those scores. The context and the token's own
   scores give, through one linear map, a gate per axis (``sigmoid`` in [0, 1] or ``tanh`` in
   [-1, 1]).
3. **Nudge.** ``h + rms(h) * (gates @ nudge)``: a gated correction vector per axis, in units of the
   token's own RMS, so that one learning rate suits layers and models whose residual norms differ
   by orders of magnitude. The nudge vectors start at zero, so an untrained circuit leaves the
   model exactly unchanged, and a gate of 0 leaves the token unchanged.

**Scope.** With ``scope="all"`` every token is nudged. With ``scope="response"`` the gates are still
computed everywhere, but only the last prompt token and the tokens after it are nudged: the prompt's
earlier tokens stay as the model wrote them, so a gate that opens on a word early in a prompt (``kill``
in "how do I kill a Python process") cannot push the model towards refusing before the whole prompt
has been read. The prompt's end is the last real token of the first call of a sequence (the prompt
pass of ``generate``, a next-token read), or, for a teacher-forced pass over prompt and response
together (training, log-likelihood scoring), the column the caller declares with
:func:`alignscope.hooks.prompt_ends.prompt_ends`.

**Hold.** With ``hold=True`` (scope ``response`` only) the gates decided at the last prompt token act
on every later token too: the decision is taken once, when the whole prompt has been read, and the
answer's own tokens (which join what the decision attention averages) cannot reopen or close it. The
recorded gates are the ones that act, so after the prompt's end they repeat its values.

During KV-cached generation the keys and values of earlier tokens are kept in the
:class:`CircuitHandle` (reset where a sequence starts, like conditional steering's gate), so a
decoding step attends over the whole sequence without recomputing it. The handle can also record
each call's axis scores and gates (``record=True``), which is what the sensor heatmap draws.

The circuit is a member of the intervention family (kind ``mac``): ``apply(lm)`` scopes it,
``save_intervention`` writes it as safetensors with its settings as metadata, and
:func:`attach_to_hf` puts the same hooks on a plain HF model that never went through alignscope.

Example:
    >>> circuit = AlignmentCircuit.new(lm.d_model, layer=15)               # doctest: +SKIP
    >>> with circuit.apply(lm, record=True) as handle:                     # doctest: +SKIP
    ...     lm.hf_model.generate(ids, attention_mask=mask, max_new_tokens=16)
    >>> handle.trace()["gates"].shape                                      # doctest: +SKIP
    torch.Size([1, 24, 3])
    >>> handle = attach_to_hf(plain_hf_model, "out/mac.safetensors")       # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple, get_args

import torch

from alignscope.errors import InputError
from alignscope.hooks.backends import HookTarget, NativeTarget
from alignscope.hooks.handle import HookHandle
from alignscope.hooks.prompt_ends import current_prompt_ends, last_real_columns
from alignscope.hooks.writes import HookFn
from alignscope.io import read_safetensors
from alignscope.models.hf_compat import cache_in_call, cache_length
from alignscope.models.loader import LoadedModel
from alignscope.sites import Site
from alignscope.steering.interventions import FieldReader, HookIntervention, StartHook
from alignscope.steering.probes import rms_normalise

DEFAULT_AXES: tuple[str, ...] = ("helpful", "harmless", "honest")
GATES: tuple[str, ...] = ("sigmoid", "tanh")
Scope = Literal["all", "response"]
SCOPES: tuple[str, ...] = get_args(Scope)  # which tokens the circuit nudges (see the module docstring)
ParameterName = Literal["axes", "axis_bias", "query", "key", "decide", "decide_bias", "nudge"]
PARAMETERS: tuple[str, ...] = get_args(ParameterName)  # CircuitNet's parameters, in order
COMPONENT = "resid_post"
_EPS = 1e-6


class Decision(NamedTuple):
    """What one call of :class:`CircuitNet` returns."""

    edited: torch.Tensor  # (batch, seq, d_model), the edited hidden states
    scores: torch.Tensor  # (batch, seq, n_axes) float32 axis scores
    gates: torch.Tensor  # (batch, seq, n_axes) float32, the gates that act (held ones after the prompt's end)
    past: tuple[torch.Tensor, torch.Tensor]  # keys and values including this call's tokens
    held: torch.Tensor | None  # (batch, n_axes) the gates held from the prompt's end (None: no hold)


class CircuitNet(torch.nn.Module):
    """The trainable parameters and the math of the circuit (no hooks; see :class:`AlignmentCircuit`).

    Args:
        d_model: residual stream width.
        n_axes: number of sensed axes (at least 1).
        width: query/key width of the decision attention.
        gate: ``sigmoid`` or ``tanh``.
        gate_bias: initial bias of the gate logits (negative: gates start near 0 for ``sigmoid``).
    """

    def __init__(self, d_model: int, n_axes: int = 3, width: int = 16, gate: str = "sigmoid", gate_bias: float = -2.0) -> None:
        super().__init__()
        check_shape(d_model, n_axes, width, gate)
        self.d_model, self.n_axes, self.width, self.gate = d_model, n_axes, width, gate
        gen = torch.Generator().manual_seed(0)
        self.axes = torch.nn.Parameter(torch.randn(n_axes, d_model, generator=gen) / math.sqrt(d_model))
        self.axis_bias = torch.nn.Parameter(torch.zeros(n_axes))
        self.query = torch.nn.Parameter(torch.randn(width, d_model, generator=gen) / math.sqrt(d_model))
        self.key = torch.nn.Parameter(torch.randn(width, n_axes, generator=gen) / math.sqrt(n_axes))
        self.decide = torch.nn.Parameter(torch.randn(n_axes, 2 * n_axes, generator=gen) * 0.1)
        self.decide_bias = torch.nn.Parameter(torch.full((n_axes,), float(gate_bias)))
        self.nudge = torch.nn.Parameter(torch.zeros(n_axes, d_model))

    def load_start(self, values: dict[str, torch.Tensor]) -> None:
        """Copy starting values into the named parameters (the others keep theirs).

        Raises:
            InputError: a name that is not a parameter, or a value of another shape (the field is ``init.NAME``).
        """
        own = dict(self.named_parameters())
        for name, value in values.items():
            if name not in own or own[name].shape != value.shape:
                raise InputError(f"expected one of {', '.join(own)} with its shape, got {name} of shape {tuple(value.shape)}",
                                 field=f"init.{name}")
            with torch.no_grad():
                own[name].copy_(value)

    def sense(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(normalised state, axis scores, rms)`` for ``h`` ``(batch, seq, d_model)``, in float32."""
        hn, rms = rms_normalise(h, _EPS)
        return hn, hn @ self.axes.T + self.axis_bias, rms

    def forward(self, h: torch.Tensor, key_real: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None,
                edit_from: torch.Tensor | None = None, *, hold: bool = False, held: torch.Tensor | None = None) -> Decision:
        """Edit ``h`` ``(batch, seq, d_model)``.

        Args:
            h: hidden states of this call's tokens.
            key_real: ``(batch, past + seq)`` bool, which positions are real tokens (not padding).
            past: keys ``(batch, past, width)`` and values ``(batch, past, n_axes)`` of earlier tokens.
            edit_from: ``(batch,)`` per row, the first position (counting ``past``) that is nudged; earlier positions
                are returned unchanged (None: every position is nudged).
            hold: the positions after ``edit_from`` take the gates of position ``edit_from`` (needs ``edit_from``).
            held: with ``hold``, those gates from an earlier call of the sequence (None: ``edit_from`` is in this call).

        Returns:
            the :class:`Decision`: edited ``h``, axis scores, gates, keys and values, and the held gates.
        """
        hn, scores, rms = self.sense(h)
        keys, values = scores @ self.key.T, scores
        if past is not None:
            keys, values = torch.cat([past[0], keys], 1), torch.cat([past[1], scores], 1)
        n_past, seq = keys.shape[1] - h.shape[1], h.shape[1]
        logits = (hn @ self.query.T) @ keys.transpose(1, 2) / math.sqrt(self.width)
        pos = torch.arange(seq, device=h.device).unsqueeze(1) + n_past
        cols = torch.arange(n_past + seq, device=h.device).unsqueeze(0)
        allowed = (cols <= pos).unsqueeze(0) & key_real.unsqueeze(1).to(h.device)
        allowed = allowed | (cols == pos).unsqueeze(0)  # a padded query attends to itself: never an empty row
        context = logits.masked_fill(~allowed, float("-inf")).softmax(-1) @ values
        z = torch.cat([scores, context], -1) @ self.decide.T + self.decide_bias
        gates = torch.sigmoid(z) if self.gate == "sigmoid" else torch.tanh(z)
        if hold:
            if edit_from is None:
                raise ValueError("holding the gates needs edit_from, the prompt's end")
            gates, held = _hold(gates, edit_from.to(h.device), n_past, held)
        edited = h + (rms * (gates @ self.nudge)).to(h.dtype)
        if edit_from is not None:
            nudged = pos.squeeze(1).unsqueeze(0) >= edit_from.to(h.device).unsqueeze(1)
            edited = torch.where(nudged.unsqueeze(-1), edited, h)
        return Decision(edited, scores, gates, (keys, values), held if hold else None)


def _hold(gates: torch.Tensor, edit_from: torch.Tensor, n_past: int, held: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``gates`` with each row's positions after ``edit_from`` set to its gates at ``edit_from`` (from this call, or
    ``held`` from an earlier one), and those gates."""
    rows, seq = torch.arange(gates.shape[0], device=gates.device), gates.shape[1]
    if held is None:
        local = edit_from - n_past
        if bool(((local < 0) | (local >= seq)).any()):
            raise ValueError(f"the prompt ends {edit_from.tolist()} are not in this call's positions {n_past}..{n_past + seq - 1}")
        held = gates[rows, local]
    after = (torch.arange(seq, device=gates.device).unsqueeze(0) + n_past) > edit_from.unsqueeze(1)
    return torch.where(after.unsqueeze(-1), held.unsqueeze(1), gates), held


def check_scope(scope: str, path: str | Path | None = None) -> None:
    """Raise a clear error for an unknown scope (naming ``path``, the file it was read from, if any)."""
    if scope not in SCOPES:
        raise InputError(f"unknown scope {scope!r}; expected one of {', '.join(SCOPES)}", path=path, field="scope")


def check_hold(hold: bool, scope: str, path: str | Path | None = None, field: str = "hold") -> None:
    """Raise a clear error for a hold without a prompt's end to hold from (naming ``path``, if any, and ``field``)."""
    if hold and scope != "response":
        raise InputError(f"holding the gates from the prompt's end needs scope 'response', got scope {scope!r}",
                         path=path, field=field)


def check_shape(d_model: int, n_axes: int, width: int, gate: str) -> None:
    """Raise a clear error for a circuit shape that cannot work."""
    for name, value in (("d_model", d_model), ("n_axes", n_axes), ("width", width)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"expected a positive integer, got {value!r}", field=name)
    if gate not in GATES:
        raise InputError(f"unknown gate form {gate!r}; expected one of {', '.join(GATES)}", field="gate")


class CircuitHandle(HookHandle):
    """Hook handle holding a sequence's decision keys and values, and (when recording) the sensed scores and gates."""

    def __init__(self, record: bool = False) -> None:
        super().__init__()
        self.record = record
        self.mask: torch.Tensor | None = None
        self.past: tuple[torch.Tensor, torch.Tensor] | None = None
        self.edit_from: torch.Tensor | None = None  # per row, the first nudged position (scope "response")
        self.held: torch.Tensor | None = None  # per row, the gates held from the prompt's end (hold)
        self.scores: list[torch.Tensor] = []
        self.gates: list[torch.Tensor] = []
        self.last_gates: torch.Tensor | None = None  # the last call's gates, with their graph when gradients are on

    def start_call(self, mask: torch.Tensor | None, new_sequence: bool) -> None:
        """Record this call's attention mask; forget the previous sequence where a new one starts."""
        self.mask = mask
        if new_sequence:
            self.past, self.edit_from, self.held = None, None, None
            self.scores, self.gates = [], []

    def key_real(self, batch: int, total: int, device: torch.device) -> torch.Tensor:
        """``(batch, total)`` bool: the real positions of the sequence so far (all real without a mask)."""
        mask = self.mask
        if mask is None or mask.ndim != 2 or mask.shape[0] != batch or mask.shape[1] < total:
            return torch.ones(batch, total, dtype=torch.bool, device=device)
        return mask[:, mask.shape[1] - total:].to(device).bool()

    def trace(self) -> dict[str, torch.Tensor]:
        """The recorded ``scores`` and ``gates`` of the last sequence, ``(batch, tokens, n_axes)`` on CPU."""
        if not self.scores:
            raise RuntimeError("nothing recorded: apply the circuit with record=True and run the model")
        return {"scores": torch.cat(self.scores, 1), "gates": torch.cat(self.gates, 1)}


@dataclass(frozen=True, eq=False)
class AlignmentCircuit(HookIntervention[CircuitHandle]):
    """The circuit as an intervention (kind ``mac``) at ``resid_post`` of :attr:`layer`.

    Args:
        net: the trainable :class:`CircuitNet` (its parameters are trained in place).
        layer: the layer whose output is edited.
        axis_names: one name per axis.
        record: whether handles record scores and gates by default.
        scope: ``all`` (every token is nudged) or ``response`` (the last prompt token and later ones; see the module
            docstring).
        hold: the gates decided at the last prompt token act on every later token (scope ``response`` only).
    """

    kind: ClassVar[str] = "mac"
    net: CircuitNet
    layer: int
    axis_names: tuple[str, ...] = DEFAULT_AXES
    record: bool = False
    scope: str = "all"
    hold: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "axis_names", tuple(self.axis_names))
        if len(self.axis_names) != self.net.n_axes:
            raise InputError(f"{len(self.axis_names)} axis names for {self.net.n_axes} axes", field="axis_names")
        if not isinstance(self.layer, int) or isinstance(self.layer, bool) or self.layer < 0:
            raise InputError(f"expected a layer index >= 0, got {self.layer!r}", field="layer")
        check_scope(self.scope)
        check_hold(self.hold, self.scope)

    @classmethod
    def new(cls, d_model: int, layer: int, *, axis_names: Sequence[str] = DEFAULT_AXES, width: int = 16,
            gate: str = "sigmoid", gate_bias: float = -2.0, scope: str = "all", hold: bool = False) -> AlignmentCircuit:
        """A fresh circuit (nudges at zero: the model is unchanged until it is trained)."""
        if not axis_names:
            raise InputError("expected at least one axis", field="axes")
        return cls(CircuitNet(d_model, len(axis_names), width, gate, gate_bias), layer, tuple(axis_names), scope=scope, hold=hold)

    @property
    def site(self) -> Site:
        """Where the circuit edits: ``resid_post`` of :attr:`layer`."""
        return Site(self.layer, COMPONENT)

    def validate(self, lm: LoadedModel) -> None:
        if self.net.d_model != lm.d_model:
            raise InputError(f"the circuit has d_model {self.net.d_model} but the model {lm.name} has d_model {lm.d_model}",
                             field="d_model")
        self.site.validate(lm)

    def new_handle(self) -> CircuitHandle:
        return CircuitHandle(self.record)

    def hooks(self, lm: LoadedModel | None, handle: CircuitHandle) -> list[tuple[Site, HookFn]]:
        net, response_only, hold = self.net, self.scope == "response", self.hold

        def hook(_m: torch.nn.Module, _i: Any, h: torch.Tensor) -> torch.Tensor:
            if net.axes.device != h.device:
                net.to(h.device)
            key_real = handle.key_real(h.shape[0], h.shape[1] + (0 if handle.past is None else handle.past[0].shape[1]), h.device)
            if handle.past is not None and handle.past[0].shape[0] != h.shape[0]:
                raise InputError(f"batch size changed from {handle.past[0].shape[0]} to {h.shape[0]} within one sequence "
                                 "(beam search is not supported)", field="batch")
            if response_only and handle.past is None:  # the first call of a sequence: where does its prompt end?
                handle.edit_from = _prompt_end(key_real)
            out = net(h, key_real, handle.past, handle.edit_from, hold=hold, held=handle.held)  # edit_from: None unless scope response
            grad = torch.is_grad_enabled()
            handle.past = out.past if grad else (out.past[0].detach(), out.past[1].detach())
            handle.held = out.held if grad or out.held is None else out.held.detach()
            handle.last_gates = out.gates
            if handle.record:
                handle.scores.append(out.scores.detach().cpu())
                handle.gates.append(out.gates.detach().cpu())
            return out.edited

        return [(self.site, hook)]

    def start_hooks(self, target: HookTarget, handle: CircuitHandle) -> list[StartHook]:
        def pre(_m: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
            mask = mask if isinstance(mask, torch.Tensor) and mask.ndim == 2 else None
            handle.start_call(mask, cache_length(cache_in_call(kwargs)) == 0)
        return [pre]

    @contextmanager
    def apply(self, lm: LoadedModel, target: HookTarget | None = None, *, record: bool | None = None) -> Iterator[CircuitHandle]:
        """Attach for the duration of a ``with`` block; ``record`` overrides :attr:`record` for this scope."""
        circuit = self if record is None else replace(self, record=record)  # shares the trained net
        with HookIntervention.apply(circuit, lm, target) as handle:
            yield handle

    def attach_to(self, model: torch.nn.Module, *, record: bool = False) -> CircuitHandle:
        """Attach to a plain HF causal LM (no alignscope loading); the handle's ``remove()`` detaches it."""
        target = NativeTarget(model)
        if not target.supports([self.site]):
            raise InputError(f"the circuit edits layer {self.layer} but the model has {len(target.layers)} layers", field="layer")
        width = int(getattr(model.config, "hidden_size", self.net.d_model))
        if width != self.net.d_model:
            raise InputError(f"the circuit has d_model {self.net.d_model} but the model has hidden_size {width}", field="d_model")
        handle = CircuitHandle(record)
        return self.register(target, handle, self.hooks(None, handle))

    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        tensors = {name: p.detach().float().cpu().contiguous() for name, p in self.net.named_parameters()}
        meta = {"layer": json.dumps(self.layer), "axis_names": json.dumps(list(self.axis_names)), "width": json.dumps(self.net.width),
                "gate": self.net.gate, "d_model": json.dumps(self.net.d_model), "component": COMPONENT, "scope": self.scope,
                "hold": json.dumps(self.hold)}
        return tensors, meta

    @classmethod
    def from_reader(cls, r: FieldReader) -> AlignmentCircuit:
        """Rebuild from a saved file; errors name the file and field."""
        names = r.json("axis_names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise InputError(f"expected a non-empty JSON list of axis names, got {r.meta.get('axis_names')!r}", path=r.path, field="axis_names")
        layer, width, d_model = _meta_int(r, "layer", 0), _meta_int(r, "width", 1), _meta_int(r, "d_model", 1)
        gate = r.text("gate", "sigmoid")
        if gate not in GATES:
            raise InputError(f"unknown gate form {gate!r}; expected one of {', '.join(GATES)}", path=r.path, field="gate")
        scope = r.text("scope", "all")  # files written before scopes existed nudge every token
        check_scope(scope, r.path)
        hold = r.json("hold", False)  # files written before holds existed do not hold
        if not isinstance(hold, bool):
            raise InputError(f"expected true or false, got {r.meta.get('hold')!r}", path=r.path, field="hold")
        check_hold(hold, scope, r.path)
        net = CircuitNet(d_model, len(names), width, gate)
        state = {}
        for name, param in net.named_parameters():
            t = r.tensor(name, ndim=param.ndim)
            if t.shape != param.shape:
                raise InputError(f"expected shape {tuple(param.shape)}, got {tuple(t.shape)}", path=r.path, field=name)
            if not torch.isfinite(t).all():
                raise InputError("contains NaN or inf", path=r.path, field=name)
            state[name] = t
        net.load_state_dict(state)
        return cls(net, layer, tuple(names), scope=scope, hold=hold)


def _prompt_end(key_real: torch.Tensor) -> torch.Tensor:
    """Per row, the column of the last prompt token of a sequence's first call: the caller's declaration
    (:func:`~alignscope.hooks.prompt_ends.prompt_ends`) or else the row's last real token."""
    declared = current_prompt_ends()
    if declared is None:
        return last_real_columns(key_real)
    if declared.shape != (key_real.shape[0],) or bool((declared >= key_real.shape[1]).any()):
        raise InputError(f"declared prompt ends {declared.tolist()} do not fit a batch of {key_real.shape[0]} rows of "
                         f"{key_real.shape[1]} tokens", field="prompt_ends")
    return declared.to(key_real.device)


def _meta_int(r: FieldReader, key: str, minimum: int) -> int:
    value = r.json(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InputError(f"expected an integer >= {minimum}, got {r.meta.get(key)!r}", path=r.path, field=key)
    return value


def load_circuit(path: str | Path) -> AlignmentCircuit:
    """Read a circuit file (an intervention file of kind ``mac``).

    Raises:
        InputError: missing file, another kind, or malformed fields (the message names file and field).
    """
    tensors, meta = read_safetensors(Path(path), "alignment circuit file")
    if meta.get("kind") != AlignmentCircuit.kind:
        raise InputError(f"expected an alignment circuit (kind 'mac'), got kind {meta.get('kind')!r}", path=path, field="kind")
    return AlignmentCircuit.from_reader(FieldReader(Path(path), tensors, meta))


def attach_to_hf(model: torch.nn.Module, path: str | Path, *, record: bool = False) -> CircuitHandle:
    """Attach a saved circuit to a plain HF causal LM with forward hooks; ``handle.remove()`` detaches it.

    The hooks are the library's own (a pre-hook on ``model`` that reads the attention mask and
    the cache, a forward hook on the output of the circuit's decoder layer), so generation and
    padded batches behave exactly as under :meth:`AlignmentCircuit.apply`.

    Example:
        >>> model = AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")  # doctest: +SKIP
        >>> handle = attach_to_hf(model, "out/mac.safetensors")                                # doctest: +SKIP
        >>> model.generate(**batch, max_new_tokens=32)                                          # doctest: +SKIP
        >>> handle.remove()                                                                     # doctest: +SKIP
    """
    circuit = load_circuit(path)
    device = next(model.parameters()).device
    circuit.net.to(device)
    return circuit.attach_to(model, record=record)
