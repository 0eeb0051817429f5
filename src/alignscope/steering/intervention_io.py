"""The intervention file format: one safetensors file per intervention, and the registry of kinds.

Tensors hold the vectors and probe weights; string metadata holds ``format``
(``alignscope.intervention/1``), ``kind``, ``model`` and the kind's own fields (``layers``,
``coefficients``, ``threshold``, ...), JSON-encoded. :data:`KINDS` maps each kind to the
function that rebuilds it from a :class:`~alignscope.steering.interventions.FieldReader`;
reading errors name the file and the field.

Example:
    >>> save_intervention("out/intervention.safetensors", add, model=lm.name)  # doctest: +SKIP
    >>> load_intervention("out")                                               # doctest: +SKIP
    ActivationAddition(...)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alignscope.errors import InputError
from alignscope.io import read_safetensors, refuse_pickle, save_safetensors
from alignscope.steering.circuit import AlignmentCircuit
from alignscope.steering.conditional import ConditionalSteering
from alignscope.steering.interventions import (
    ABLATION_COMPONENTS,
    ActivationAddition,
    DirectionalAblation,
    FieldReader,
    HookIntervention,
    Intervention,
    ProjectionClamp,
)

FORMAT = "alignscope.intervention/1"


def _build_addition(r: FieldReader) -> HookIntervention:
    return ActivationAddition(r.tensor("vector"), r.layers(), r.number("coefficients"), r.text("component", "resid_pre"))


def _build_ablation(r: FieldReader) -> HookIntervention:
    layers = r.json("layers", None)
    comps = r.json("components", list(ABLATION_COMPONENTS))
    return DirectionalAblation(r.tensor("direction"), None if layers is None else r.layers(), tuple(comps))


def _build_clamp(r: FieldReader) -> HookIntervention:
    return ProjectionClamp(r.tensor("direction"), r.layers(), r.number("value"), r.text("component", "resid_pre"))


def _build_conditional(r: FieldReader) -> HookIntervention:
    return ConditionalSteering.from_reader(r)


KINDS: dict[str, Callable[[FieldReader], HookIntervention]] = {
    "addition": _build_addition, "ablation": _build_ablation, "clamp": _build_clamp, "conditional": _build_conditional,
    "mac": AlignmentCircuit.from_reader,
}


def intervention_path(path: str | Path) -> Path:
    """``path`` itself when it names a ``.safetensors`` file, else ``path/intervention.safetensors``.

    Raises:
        InputError: ``path`` names a pickle-based file (``.pt``, ``.pkl``, ...): never opened.
    """
    p = Path(path)
    refuse_pickle(p)
    return p if p.suffix == ".safetensors" else p / "intervention.safetensors"


def save_intervention(path: str | Path, intervention: Intervention, *, model: str) -> Path:
    """Write ``intervention`` (tensors + string metadata) atomically; returns the file written.

    Metadata always holds ``format``, ``kind`` and ``model``, plus the kind's own fields
    (``layers``, ``coefficients``, ``threshold``, ...), JSON-encoded.
    """
    tensors, meta = intervention.to_tensors()
    target = intervention_path(path)
    save_safetensors(target, tensors, {**meta, "format": FORMAT, "kind": intervention.kind, "model": model})
    return target


def load_intervention(path: str | Path) -> HookIntervention:
    """Read a file written by :func:`save_intervention`.

    Raises:
        InputError: missing file, unknown kind, missing or malformed tensors/fields; the
            message names the file and field.
    """
    target = intervention_path(path)
    tensors, meta = read_safetensors(target, "intervention file")
    kind = meta.get("kind")
    if kind not in KINDS:
        raise InputError(f"unknown intervention kind {kind!r}; expected one of {', '.join(KINDS)}", path=target, field="kind")
    return KINDS[kind](FieldReader(target, tensors, meta))


def intervention_model(path: str | Path) -> str | None:
    """The ``model`` an intervention file was saved for (its metadata), or None when it names none."""
    _, meta = read_safetensors(intervention_path(path), "intervention file")
    return meta.get("model") or None
