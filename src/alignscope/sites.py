"""Typed model sites and their mapping to TransformerBridge hook names, in one place.

A :class:`Site` names a place in the model: a layer, a component, and for per-head
components optionally a head. Components:

===============  ================================  =======================================
component        hook                              activation shape per token
===============  ================================  =======================================
``resid_pre``    ``blocks.{l}.hook_resid_pre``     ``(d_model,)``, residual entering block l
``resid_mid``    ``blocks.{l}.hook_resid_mid``     ``(d_model,)``, after attention (not on
                                                   parallel-attention models)
``resid_post``   ``blocks.{l}.hook_resid_post``    ``(d_model,)``, residual leaving block l
``attn_out``     ``blocks.{l}.hook_attn_out``      ``(d_model,)``
``mlp_out``      ``blocks.{l}.hook_mlp_out``       ``(d_model,)``
``head``         ``blocks.{l}.attn.hook_z``        ``(n_heads, d_head)``, per-head output z
``pattern``      ``blocks.{l}.attn.hook_pattern``  ``(n_heads, key_pos)``, attention weights
===============  ================================  =======================================

Example:
    >>> Site(3, "resid_post").hook_name
    'blocks.3.hook_resid_post'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, cast, get_args

from alignscope.errors import SiteError

Component = Literal["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "head", "pattern"]
COMPONENTS: tuple[str, ...] = get_args(Component)
HEAD_COMPONENTS = ("head", "pattern")

_HOOKS: dict[str, str] = {
    "resid_pre": "blocks.{layer}.hook_resid_pre",
    "resid_mid": "blocks.{layer}.hook_resid_mid",
    "resid_post": "blocks.{layer}.hook_resid_post",
    "attn_out": "blocks.{layer}.hook_attn_out",
    "mlp_out": "blocks.{layer}.hook_mlp_out",
    "head": "blocks.{layer}.attn.hook_z",
    "pattern": "blocks.{layer}.attn.hook_pattern",
}


class ModelShape(Protocol):
    """What site validation needs to know about a model (a :class:`LoadedModel` fits)."""

    @property
    def n_layers(self) -> int: ...

    @property
    def n_heads(self) -> int: ...

    @property
    def bridge(self) -> object: ...


@dataclass(frozen=True, order=True)
class Site:
    """A place in the model: ``(layer, component, head)``.

    Args:
        layer: block index, 0-based.
        component: one of :data:`COMPONENTS`.
        head: head index, only for ``head``/``pattern``; None means all heads.
    """

    layer: int
    component: str
    head: int | None = None

    def __post_init__(self) -> None:
        parse_component(self.component)
        if not isinstance(self.layer, int) or isinstance(self.layer, bool):
            raise SiteError(f"layer must be an int, got {self.layer!r}")
        if self.head is not None and self.component not in HEAD_COMPONENTS:
            raise SiteError(f"a head index only applies to {' and '.join(HEAD_COMPONENTS)}, not {self.component!r}")

    @property
    def hook_name(self) -> str:
        """The TransformerBridge hook point name."""
        return _HOOKS[self.component].format(layer=self.layer)

    def __str__(self) -> str:
        return f"{self.component}@{self.layer}" + ("" if self.head is None else f".h{self.head}")

    def validate(self, model: ModelShape) -> Site:
        """Check the site exists on ``model``; return it unchanged.

        Raises:
            SiteError: out-of-range layer or head, or a component the architecture lacks.
        """
        if not 0 <= self.layer < model.n_layers:
            raise SiteError(f"layer {self.layer} is out of range for {self}: valid layers are 0..{model.n_layers - 1}")
        if self.head is not None and not 0 <= self.head < model.n_heads:
            raise SiteError(f"head {self.head} is out of range for {self}: valid heads are 0..{model.n_heads - 1}")
        hooks = getattr(model.bridge, "hook_dict", None)
        if hooks is not None and self.hook_name not in hooks:
            valid = available_components(model)
            raise SiteError(f"component {self.component!r} does not exist on this architecture; valid here: {', '.join(valid)}")
        return self


def available_components(model: ModelShape) -> list[str]:
    """Components whose hook exists at layer 0 of ``model``."""
    hooks = getattr(model.bridge, "hook_dict", {})
    return [c for c in COMPONENTS if _HOOKS[c].format(layer=0) in hooks]


def parse_component(text: str, allowed: Sequence[str] = COMPONENTS) -> Component:
    """The component named ``text`` if it is one of ``allowed`` (default: all of :data:`COMPONENTS`).

    Raises:
        SiteError: ``text`` is not in ``allowed``; the message lists them.
    """
    if text not in allowed or text not in COMPONENTS:
        raise SiteError(f"unknown component {text!r}; valid components: {', '.join(allowed)}")
    return cast(Component, text)


def parse_site(text: str) -> Site:
    """Parse ``component@layer`` or ``component@layer.hHEAD``, e.g. ``resid_post@14``, ``head@3.h5``."""
    comp, sep, rest = text.partition("@")
    if not sep:
        raise SiteError(f"cannot parse site {text!r}: expected component@layer, e.g. resid_post@14 or head@3.h5")
    layer_txt, _, head_txt = rest.partition(".h")
    try:
        layer = int(layer_txt)
        head = int(head_txt) if head_txt else None
    except ValueError:
        raise SiteError(f"cannot parse site {text!r}: layer and head must be integers") from None
    return Site(layer, comp.strip(), head)


def layer_sites(model: ModelShape, component: str, layers: Iterable[int] | None = None) -> list[Site]:
    """One validated site per layer (all layers by default) for ``component``."""
    chosen: Sequence[int] = range(model.n_layers) if layers is None else list(layers)
    return [Site(layer, component).validate(model) for layer in chosen]
