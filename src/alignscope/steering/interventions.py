"""Scoped, reversible interventions on the residual stream, and their portable file format.

Every intervention follows one protocol (see :class:`Intervention`): ``attach(lm)`` registers
torch forward hooks on the TransformerBridge's hook points and returns a handle with
``.remove()``; ``apply(lm)`` is the same as a context manager (hooks acquired before ``try``,
removed in ``finally``). The bridge wraps the HF modules in place, so the hooks also fire in
``lm.hf_model.generate`` on the prompt pass and on every KV-cached decoding step. Edits act on
each position independently, so left padding does not change real tokens' results.

``attach(lm, target=...)``/``apply(lm, target=...)`` put the same hooks on another
:class:`~alignscope.hooks.backends.HookTarget`, e.g. the native twin
(:class:`~alignscope.hooks.backends.NativeTarget`), which generates faster; ``sites(lm)``
lists the hooked sites so that a caller can check the target supports them first.

Kinds:

* :class:`ActivationAddition` (``addition``): ``x + c * v`` at chosen layers, every position.
* :class:`DirectionalAblation` (``ablation``): ``x - (x . d) d`` with unit ``d`` on
  ``resid_pre``, ``attn_out`` and ``mlp_out`` at every layer (Arditi et al. 2024).
* :class:`ProjectionClamp` (``clamp``): sets ``x . d`` to a fixed value at chosen layers.
* ``conditional`` lives in :mod:`alignscope.steering.conditional`.

Example:
    >>> add = ActivationAddition(vector, layers=(14,), coefficient=4.0)     # doctest: +SKIP
    >>> with add.apply(lm):                                                 # doctest: +SKIP
    ...     out = lm.hf_model.generate(ids, attention_mask=mask)
    >>> save_intervention("out/intervention.safetensors", add, model=lm.name)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

import torch
from jaxtyping import Float

from alignscope.errors import InputError
from alignscope.hooks.backends import BridgeTarget, HookTarget
from alignscope.hooks.handle import HookHandle
from alignscope.hooks.writes import HookFn
from alignscope.models.loader import LoadedModel
from alignscope.sites import Site

ABLATION_COMPONENTS: tuple[str, ...] = ("resid_pre", "attn_out", "mlp_out")
StartHook = Callable[[torch.nn.Module, tuple[Any, ...], dict[str, Any]], Any]


H = TypeVar("H", bound=HookHandle)


@runtime_checkable
class Intervention(Protocol):
    """The intervention family: what the whole library (``evals``, ``recipes``, the pipeline, the CLI) relies on.

    Every kind is a :class:`HookIntervention`; this protocol is its public face.
    """

    kind: ClassVar[str]

    def sites(self, lm: LoadedModel) -> list[Site]:
        """The sites :meth:`attach` hooks on ``lm`` (so a caller can choose a back-end first)."""
        ...

    def attach(self, lm: LoadedModel, target: HookTarget | None = None) -> HookHandle:
        """Attach the hooks now (to ``target``, default the bridge); the handle's ``.remove()`` detaches them."""
        ...

    def apply(self, lm: LoadedModel, target: HookTarget | None = None) -> AbstractContextManager[HookHandle]:
        """Context manager: hooks attached on enter, removed on exit (exception-safe)."""
        ...

    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """Tensors and string metadata for :func:`~alignscope.steering.intervention_io.save_intervention`."""
        ...


def intervention_scope(lm: LoadedModel, intervention: Intervention | None,
                       target: HookTarget | None = None) -> contextlib.AbstractContextManager[Any]:
    """``intervention.apply(lm, target)`` if there is an intervention, else a no-op context."""
    if intervention is None:
        return contextlib.nullcontext()
    return intervention.apply(lm, target)


class DeviceCast:
    """A tensor cached on the device and dtype of the activations it meets."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.base = tensor
        self._cached = tensor

    def like(self, act: torch.Tensor) -> torch.Tensor:
        if self._cached.device != act.device or self._cached.dtype != act.dtype:
            self._cached = self.base.to(device=act.device, dtype=act.dtype)
        return self._cached


def require_supported(target: HookTarget, sites: Sequence[Site]) -> None:
    """Raise a clear error when ``target`` cannot hook one of ``sites``."""
    bad = [str(site) for site in sites if not target.supports([site])]
    if bad:
        advice = "no such site on this model" if target.name == "bridge" else "use the bridge target"
        raise InputError(f"the {target.name} target cannot hook {', '.join(bad)}; {advice}", field="target")


class HookIntervention(ABC, Generic[H]):
    """Base of every intervention: forward hooks at sites, plus optional pre-hooks where a sequence starts.

    A kind lists its hooks with :meth:`hooks`; a kind with per-sequence state (conditional
    steering) returns its own handle from :meth:`new_handle`, which the hooks share, and may add
    :meth:`start_hooks` on the model's root module. :meth:`attach` is the same for every kind.
    """

    kind: ClassVar[str]

    @abstractmethod
    def new_handle(self) -> H:
        """The handle :meth:`attach` returns (and :meth:`hooks` may keep state in)."""

    @abstractmethod
    def hooks(self, lm: LoadedModel, handle: H) -> list[tuple[Site, HookFn]]:
        """``(site, forward hook)`` pairs, in the order they must run."""

    def start_hooks(self, target: HookTarget, handle: H) -> list[StartHook]:
        """Forward pre-hooks (with kwargs) on ``target.root``, run where a sequence starts (none by default)."""
        return []

    def validate(self, lm: LoadedModel) -> None:
        """Raise a clear error if the intervention does not fit ``lm`` (no checks by default)."""

    def sites(self, lm: LoadedModel) -> list[Site]:
        """The sites :meth:`attach` hooks on ``lm``, in order."""
        return [site for site, _ in self.hooks(lm, self.new_handle())]

    def attach(self, lm: LoadedModel, target: HookTarget | None = None) -> H:
        """Register the hooks on ``target`` (default: the bridge); on any failure, remove the ones already registered.

        Raises:
            InputError: the intervention does not fit ``lm``, or ``target`` cannot hook one of its sites.
        """
        self.validate(lm)
        target = BridgeTarget(lm) if target is None else target
        handle = self.new_handle()
        return self.register(target, handle, self.hooks(lm, handle))

    def register(self, target: HookTarget, handle: H, hooks: Sequence[tuple[Site, HookFn]]) -> H:
        """Register the start hooks and ``hooks`` on ``target`` into ``handle``; on any failure, remove what was registered."""
        require_supported(target, [site for site, _ in hooks])
        try:
            for pre in self.start_hooks(target, handle):
                handle.on_input(target.root, pre, with_kwargs=True)
            for site, fn in hooks:
                handle.add(target.register(site, fn))
        except BaseException:
            handle.remove()
            raise
        return handle

    @contextmanager
    def apply(self, lm: LoadedModel, target: HookTarget | None = None) -> Iterator[H]:
        """Attach (to ``target``, default the bridge) for the duration of a ``with`` block; yields the handle."""
        handle = self.attach(lm, target)
        try:
            yield handle
        finally:
            handle.remove()

    @abstractmethod
    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """Tensors and string metadata (without ``kind``/``model``; :func:`save_intervention` adds them)."""


class StatelessIntervention(HookIntervention[HookHandle]):
    """A kind whose hooks keep no state between calls (addition, ablation, clamp): a plain :class:`HookHandle`."""

    def new_handle(self) -> HookHandle:
        """A plain handle."""
        return HookHandle()


def check_vector(vector: torch.Tensor, name: str) -> torch.Tensor:
    """A detached float32 CPU copy of a 1-D, finite, non-empty vector."""
    if not isinstance(vector, torch.Tensor) or vector.ndim != 1 or vector.numel() == 0:
        shape = tuple(vector.shape) if isinstance(vector, torch.Tensor) else type(vector).__name__
        raise InputError(f"expected a 1-D tensor (d_model,), got {shape}", field=name)
    out = vector.detach().to("cpu", torch.float32).clone()
    if not torch.isfinite(out).all():
        raise InputError("contains NaN or inf", field=name)
    return out


def unit(vector: torch.Tensor, name: str) -> torch.Tensor:
    """``vector / |vector|``, rejecting a zero vector."""
    vec = check_vector(vector, name)
    norm = vec.double().norm()
    if norm <= 0:
        raise InputError("is the zero vector; a direction needs a non-zero norm", field=name)
    if abs(float(norm) - 1.0) < 1e-6:  # already unit (e.g. reloaded): keep it bit-identical
        return vec
    return (vec.double() / norm).float()


def check_fits(lm: LoadedModel, vector: torch.Tensor, layers: Sequence[int], components: Sequence[str], name: str) -> None:
    """Check the vector width and every ``(layer, component)`` site against ``lm``."""
    if vector.shape[0] != lm.d_model:
        raise InputError(f"has {vector.shape[0]} entries but the model's d_model is {lm.d_model}", field=name)
    if not layers:
        raise InputError("no layers given", field="layers")
    for layer in layers:
        for comp in components:
            Site(int(layer), comp).validate(lm)


def _project_out(direction: DeviceCast) -> HookFn:
    def hook(_m: torch.nn.Module, _i: Any, out: torch.Tensor) -> torch.Tensor:
        d = direction.like(out)
        return out - (out @ d).unsqueeze(-1) * d
    return hook


@dataclass(frozen=True, eq=False)
class ActivationAddition(StatelessIntervention):
    """Add ``coefficient * vector`` to ``component`` at each of ``layers``, at every position.

    Args:
        vector: ``(d_model,)`` steering vector (used as given, not normalised).
        layers: layers to add at.
        coefficient: scale of the addition.
        component: a ``(d_model,)`` site component (default ``resid_pre``).
    """

    kind: ClassVar[str] = "addition"
    vector: Float[torch.Tensor, " d_model"]
    layers: tuple[int, ...]
    coefficient: float = 1.0
    component: str = "resid_pre"

    def __post_init__(self) -> None:
        object.__setattr__(self, "vector", check_vector(self.vector, "vector"))
        object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))

    def validate(self, lm: LoadedModel) -> None:
        check_fits(lm, self.vector, self.layers, (self.component,), "vector")

    def hooks(self, lm: LoadedModel, handle: HookHandle) -> list[tuple[Site, HookFn]]:
        delta = DeviceCast(self.vector * float(self.coefficient))

        def hook(_m: torch.nn.Module, _i: Any, out: torch.Tensor) -> torch.Tensor:
            return out + delta.like(out)

        return [(Site(layer, self.component), hook) for layer in self.layers]

    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        return {"vector": self.vector}, {"layers": json.dumps(list(self.layers)),
                                         "coefficients": json.dumps([float(self.coefficient)]),
                                         "component": self.component}


@dataclass(frozen=True, eq=False)
class DirectionalAblation(StatelessIntervention):
    """Project the unit direction out of ``resid_pre``, ``attn_out`` and ``mlp_out`` at every layer.

    With ``layers=None`` (the default) every layer is edited, which is what a weight edit
    (:mod:`alignscope.steering.weight_edit`) reproduces.
    """

    kind: ClassVar[str] = "ablation"
    direction: Float[torch.Tensor, " d_model"]
    layers: tuple[int, ...] | None = None
    components: tuple[str, ...] = ABLATION_COMPONENTS

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", unit(self.direction, "direction"))
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))
        object.__setattr__(self, "components", tuple(self.components))

    def _layers(self, lm: LoadedModel) -> tuple[int, ...]:
        return tuple(range(lm.n_layers)) if self.layers is None else self.layers

    def validate(self, lm: LoadedModel) -> None:
        check_fits(lm, self.direction, self._layers(lm), self.components, "direction")

    def hooks(self, lm: LoadedModel, handle: HookHandle) -> list[tuple[Site, HookFn]]:
        fn = _project_out(DeviceCast(self.direction))
        return [(Site(layer, comp), fn) for layer in self._layers(lm) for comp in self.components]

    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        return {"direction": self.direction}, {"layers": json.dumps(None if self.layers is None else list(self.layers)),
                                               "components": json.dumps(list(self.components))}


@dataclass(frozen=True, eq=False)
class ProjectionClamp(StatelessIntervention):
    """Set the projection on the unit ``direction`` to ``value`` at ``layers``: ``x + (value - x.d) d``."""

    kind: ClassVar[str] = "clamp"
    direction: Float[torch.Tensor, " d_model"]
    layers: tuple[int, ...]
    value: float = 0.0
    component: str = "resid_pre"

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", unit(self.direction, "direction"))
        object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))

    def validate(self, lm: LoadedModel) -> None:
        check_fits(lm, self.direction, self.layers, (self.component,), "direction")

    def hooks(self, lm: LoadedModel, handle: HookHandle) -> list[tuple[Site, HookFn]]:
        direction = DeviceCast(self.direction)
        value = float(self.value)

        def hook(_m: torch.nn.Module, _i: Any, out: torch.Tensor) -> torch.Tensor:
            d = direction.like(out)
            return out + (value - out @ d).unsqueeze(-1) * d

        return [(Site(layer, self.component), hook) for layer in self.layers]

    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        return {"direction": self.direction}, {"layers": json.dumps(list(self.layers)), "value": repr(float(self.value)),
                                               "component": self.component}


# ----------------------------------------------------------------------------- reading saved fields

@dataclass(frozen=True)
class FieldReader:
    """Typed access to a loaded intervention file's tensors and metadata, with errors naming the file and field.

    Each kind rebuilds itself from one (see :mod:`alignscope.steering.intervention_io`).
    """

    path: Path
    tensors: dict[str, torch.Tensor]
    meta: dict[str, str] = field(default_factory=dict)

    def tensor(self, name: str, ndim: int = 1) -> torch.Tensor:
        if name not in self.tensors:
            raise InputError(f"missing tensor; the file holds {sorted(self.tensors)}", path=self.path, field=name)
        t = self.tensors[name]
        if t.ndim != ndim:
            raise InputError(f"expected a {ndim}-D tensor, got shape {tuple(t.shape)}", path=self.path, field=name)
        return t.float()

    def json(self, name: str, default: Any = ...) -> Any:
        if name not in self.meta:
            if default is not ...:
                return default
            raise InputError(f"missing metadata; the file holds {sorted(self.meta)}", path=self.path, field=name)
        try:
            return json.loads(self.meta[name])
        except json.JSONDecodeError:
            raise InputError(f"is not valid JSON: {self.meta[name]!r}", path=self.path, field=name) from None

    def layers(self, name: str = "layers") -> tuple[int, ...]:
        value = self.json(name)
        if not isinstance(value, list) or not all(isinstance(x, int) for x in value):
            raise InputError(f"expected a JSON list of layer indices, got {self.meta[name]!r}", path=self.path, field=name)
        return tuple(value)

    def number(self, name: str) -> float:
        value = self.json(name)
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if not isinstance(value, (int, float)):
            raise InputError(f"expected a number, got {self.meta[name]!r}", path=self.path, field=name)
        return float(value)

    def text(self, name: str, default: str) -> str:
        return self.meta.get(name, default)
