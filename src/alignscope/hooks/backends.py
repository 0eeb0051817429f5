"""Where intervention hooks go: the bridge's hook points, or the native twin's modules.

A hook target maps typed :class:`~alignscope.sites.Site` s to torch modules and
registers a forward hook ``fn(module, input, activation) -> activation | None`` there, the
signature every intervention uses. It also names the module whose call starts a sequence
(``root``) and runs a prompt prefix up to a layer (the conditional look-ahead).

* :class:`BridgeTarget`: the TransformerBridge's hook points inside ``lm.hf_model`` (every
  site the bridge has).
* :class:`NativeTarget`: the plain HF twin from :func:`~alignscope.models.native.native_model`,
  through the registry: ``resid_pre`` is a forward pre-hook on decoder layer ``l`` that
  replaces its hidden-states input, ``resid_post`` a forward hook on the layer's output,
  ``attn_out``/``mlp_out`` forward hooks on the module whose output the sublayer adds to the
  residual stream (``ArchSpec.write_path``). Other components (``resid_mid``, ``head``,
  ``pattern``) are not supported; :meth:`NativeTarget.supports` says so and callers use the
  bridge.

Example:
    >>> target = select_target(lm, iv.sites(lm), "auto")   # doctest: +SKIP
    >>> with iv.apply(lm, target=target):                       # doctest: +SKIP
    ...     target.root.generate(input_ids=ids, attention_mask=mask)
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol

import torch
from torch.utils.hooks import RemovableHandle

from alignscope.errors import AlignscopeError, InputError
from alignscope.hooks.points import HookTable, hook_point, hook_table
from alignscope.hooks.writes import HookFn, residual_write
from alignscope.models.hf_compat import is_compat_hook
from alignscope.models.loader import LoadedModel
from alignscope.models.native import native_model, twin_unavailable_reason
from alignscope.models.registry import get_arch, resolve_module
from alignscope.sites import Site

log = logging.getLogger(__name__)

Backend = Literal["auto", "native", "bridge"]
BACKENDS: tuple[str, ...] = ("auto", "native", "bridge")
NATIVE_COMPONENTS: tuple[str, ...] = ("resid_pre", "resid_post", "attn_out", "mlp_out")


class HookTarget(Protocol):
    """Where an intervention's hooks are registered."""

    name: str

    @property
    def root(self) -> torch.nn.Module:
        """The causal-LM module whose call starts a sequence (``generate`` runs it each step)."""
        ...

    def supports(self, sites: Iterable[Site]) -> bool:
        """Whether every site can be hooked on this target."""
        ...

    def register(self, site: Site, fn: HookFn) -> RemovableHandle:
        """Register ``fn`` as a forward hook at ``site``; the handle removes it."""
        ...

    def run_prefix(self, ids: torch.Tensor, mask: torch.Tensor | None, stop_at_layer: int) -> None:
        """Run blocks ``0 .. stop_at_layer - 1`` on a prompt (no cache), firing their hooks."""
        ...

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(batch, seq, vocab)`` logits of a left-padded batch (no cache), firing the hooks."""
        ...


class BridgeTarget:
    """The TransformerBridge's hook points (what every intervention used before targets existed)."""

    name = "bridge"

    def __init__(self, lm: LoadedModel) -> None:
        self.lm = lm
        self._table: HookTable | None = None

    @property
    def root(self) -> torch.nn.Module:
        """``lm.hf_model``, the bridge-wrapped HF module."""
        return self.lm.hf_model

    @property
    def table(self) -> HookTable:
        """The bridge's hook points by name, taken once per target."""
        if self._table is None:
            self._table = hook_table(self.lm)
        return self._table

    def supports(self, sites: Iterable[Site]) -> bool:
        """Every site must have a hook point on the bridge."""
        return all(site.hook_name in self.table for site in sites)

    def register(self, site: Site, fn: HookFn) -> RemovableHandle:
        """A forward hook on the site's hook point, writing in place where the site needs it.

        See :func:`~alignscope.hooks.writes.residual_write` (``resid_mid``).

        Raises:
            SiteError: the site does not exist on this model (the message lists the valid ones).
        """
        return hook_point(self.lm, self.table, site).register_forward_hook(residual_write(site.component, fn))

    def run_prefix(self, ids: torch.Tensor, mask: torch.Tensor | None, stop_at_layer: int) -> None:
        """``lm.bridge(ids, attention_mask=mask, stop_at_layer=stop_at_layer)``."""
        self.lm.bridge(ids, attention_mask=mask, stop_at_layer=stop_at_layer)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``lm.bridge(ids, attention_mask=mask)`` (the bridge derives position ids from the mask)."""
        return self.lm.bridge(ids, attention_mask=mask)  # type: ignore[no-any-return]


class _StopPrefix(Exception):
    """Raised by the prefix run's hook after its last block, to stop the forward pass there."""


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output  # type: ignore[no-any-return]


def _replace_first(output: Any, new: torch.Tensor) -> Any:
    return (new, *output[1:]) if isinstance(output, tuple) else new


def _post_hook(fn: HookFn) -> Callable[[torch.nn.Module, Any, Any], Any]:
    """A forward hook passing the (first) output tensor to ``fn`` and putting its result back."""
    def hook(module: torch.nn.Module, args: Any, output: Any) -> Any:
        new = fn(module, args, _first(output))
        return None if new is None else _replace_first(output, new)
    return hook


def _pre_hook(fn: HookFn) -> Callable[[torch.nn.Module, tuple[Any, ...], dict[str, Any]], Any]:
    """A forward pre-hook (with kwargs) passing the hidden-states input to ``fn`` and replacing it."""
    def hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args:
            new = fn(module, args, args[0])
            return None if new is None else ((new, *args[1:]), kwargs)
        if "hidden_states" not in kwargs:
            raise AlignscopeError(f"{type(module).__name__} was called without hidden states; cannot hook resid_pre")
        new = fn(module, args, kwargs["hidden_states"])
        return None if new is None else (args, {**kwargs, "hidden_states": new})
    return hook


class NativeTarget:
    """Modules of the plain HF twin, found through the architecture registry.

    Args:
        twin: the twin from :func:`~alignscope.models.native.native_model`, or any plain HF
            causal LM whose ``config.model_type`` the registry knows (what
            :func:`~alignscope.steering.circuit.attach_to_hf` hooks).

    Raises:
        AlignscopeError: the architecture has no registry entry.
    """

    name = "native"

    def __init__(self, twin: torch.nn.Module) -> None:
        self.twin = twin
        self.spec = get_arch(str(getattr(twin, "config").model_type))  # noqa: B009
        self.layers: list[torch.nn.Module] = list(resolve_module(twin, self.spec.layers))  # type: ignore[call-overload]

    @property
    def root(self) -> torch.nn.Module:
        """The twin causal-LM module."""
        return self.twin

    def supports(self, sites: Iterable[Site]) -> bool:
        """Every site must be ``resid_pre``, ``resid_post``, ``attn_out`` or ``mlp_out`` at an existing layer."""
        return all(self._has(site) for site in sites)

    def _has(self, site: Site) -> bool:
        return site.component in NATIVE_COMPONENTS and 0 <= site.layer < len(self.layers)

    def register(self, site: Site, fn: HookFn) -> RemovableHandle:
        """Register ``fn`` on the native module behind ``site``.

        Raises:
            InputError: the twin has no module for ``site`` (use the bridge target).
        """
        if not self._has(site):
            raise InputError(f"the native twin cannot hook {site}; it supports "
                             f"{', '.join(NATIVE_COMPONENTS)} at layers 0..{len(self.layers) - 1}", field="hook")
        layer, component = site.layer, site.component
        block = self.layers[layer]
        if component == "resid_pre":
            return block.register_forward_pre_hook(_pre_hook(fn), with_kwargs=True)
        if component == "resid_post":
            return block.register_forward_hook(_post_hook(fn))
        return resolve_module(block, self.spec.write_path(component)).register_forward_hook(_post_hook(fn))

    def run_prefix(self, ids: torch.Tensor, mask: torch.Tensor | None, stop_at_layer: int) -> None:
        """Run the twin's base model on ``ids`` and stop after decoder layer ``stop_at_layer - 1``.

        Position ids come from the mask, as ``generate`` derives them for a left-padded batch.
        """
        if not 1 <= stop_at_layer <= len(self.layers):
            raise InputError(f"stop_at_layer must be in 1..{len(self.layers)}, got {stop_at_layer}", field="stop_at_layer")
        base: torch.nn.Module = getattr(self.twin, "base_model", self.twin)
        kwargs = _padded_call(base, ids, mask)

        def stop(_m: torch.nn.Module, _i: Any, _o: Any) -> None:
            raise _StopPrefix

        handle = self.layers[stop_at_layer - 1].register_forward_hook(stop)
        try:
            base(**kwargs)
        except _StopPrefix:
            pass
        finally:
            handle.remove()

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The twin's logits on a left-padded batch, with position ids from the mask."""
        return self.twin(**_padded_call(self.twin, ids, mask)).logits  # type: ignore[no-any-return]


def _padded_call(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor | None) -> dict[str, Any]:
    """Keyword arguments for one no-cache call of a plain HF module on a left-padded batch.

    Position ids come from the mask, as ``generate`` (and the bridge) derive them for left padding.
    """
    kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "use_cache": False}
    if mask is not None and "position_ids" in inspect.signature(model.forward).parameters:
        kwargs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
    return kwargs


def bridge_is_hooked(lm: LoadedModel) -> bool:
    """Whether a forward hook is attached inside ``lm.hf_model`` (e.g. an intervention applied around the call).

    Such hooks would not fire in the twin, so ``auto`` then keeps to the bridge. Any hook on a
    bridge hook point counts; elsewhere, the bridge's own internal hooks (defined in
    ``transformer_lens``, wired on its first forward pass) and the loader's compatibility hooks do not.
    """
    points = {id(h) for h in hook_table(lm).values()}
    for module in lm.hf_model.modules():
        hooks = [*module._forward_hooks.values(), *module._forward_pre_hooks.values()]
        if hooks and (id(module) in points or any(not _from_bridge(fn) for fn in hooks)):
            return True
    return False


def _from_bridge(fn: Any) -> bool:
    """The bridge's own wiring: hooks defined in ``transformer_lens``, and our load-time compatibility hooks."""
    return str(getattr(fn, "__module__", "") or "").startswith("transformer_lens") or is_compat_hook(fn)


def select_target(lm: LoadedModel, sites: Iterable[Site], backend: str = "auto") -> HookTarget:
    """The target to run on: the native twin when it exists and supports every hook, else the bridge.

    Args:
        lm: the loaded model.
        sites: where hooks will be registered (an intervention's ``sites(lm)``).
        backend: ``auto`` (the twin where possible), ``native`` (the twin or an error) or ``bridge``.

    Raises:
        InputError: an unknown backend, or ``native`` where the twin cannot serve.
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}", field="backend")
    if backend == "bridge":
        return BridgeTarget(lm)
    native, why = _native_target(lm, sites, strict=backend == "native")
    if native is not None:
        return native
    if backend == "native":
        raise InputError(f"the native backend cannot run this: {why}; use backend='bridge' or 'auto'", field="backend")
    log.debug("running on the bridge: %s", why)
    return BridgeTarget(lm)


def _native_target(lm: LoadedModel, sites: Iterable[Site], *, strict: bool) -> tuple[NativeTarget | None, str]:
    """The twin's target when it can serve this call, else None and why not (the twin is looked up once)."""
    twin = native_model(lm)
    if twin is None:
        return None, f"no native twin for this model ({twin_unavailable_reason(lm)})"
    try:
        target = NativeTarget(twin)
    except AlignscopeError as exc:
        return None, str(exc)
    wanted = list(sites)
    if not target.supports(wanted):
        bad = [str(site) for site in wanted if not target.supports([site])]
        return None, f"sites the twin cannot hook: {', '.join(bad)} (supported: {', '.join(NATIVE_COMPONENTS)})"
    if not strict and bridge_is_hooked(lm):
        return None, "hooks are attached to the bridge model outside this call"
    return target, ""
