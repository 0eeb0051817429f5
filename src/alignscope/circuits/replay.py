"""Exact partial re-runs: record a run once, then finish many patched variants from any layer.

A :class:`RunRecord` holds what one forward pass of a single prompt produced: the residual
stream entering every block, the activations asked for, and the exact arguments each decoder
block was called with (position embeddings, the 4-D attention mask, ...). :func:`replay` then
runs many *rows* (patched variants of that run) by calling the wrapped decoder blocks directly:

* a row whose earliest patch is at layer ``l`` starts from the recorded residual entering
  block ``l``, so blocks ``0..l-1`` are never recomputed (prefix reuse);
* rows are batched as a staircase: sorted by start layer, a row joins the batch when its start
  layer comes up, so every block runs once per chunk of rows, on a large batch;
* only the last position goes through the final norm and the unembedding.

The blocks are the TransformerBridge's own modules, so its hooks fire as in a normal forward,
and the result equals a full patched forward pass (checked against plain HF in the tests).

Metrics receive logits of the last position only, shaped ``(rows, 1, vocab)``.

Under an intervention attached to the bridge (``with iv.apply(lm):`` around the analysis), every
recorded and replayed pass is of the steered model: the residual kept for a replay is the one the
block *received* (before the block's own hooks, so a ``resid_pre`` write is applied once, by the
block, not twice), each replay announces a new sequence to the model's start hooks (so a stateful
kind, e.g. the alignment circuit, forgets the recorded run's state), and on a site both touch the
intervention's hook, attached first, runs first and a patch then overwrites its result.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from alignscope.errors import AlignscopeError, InputError
from alignscope.hooks.backends import BridgeTarget
from alignscope.hooks.handle import HookHandle, run_start_hooks
from alignscope.hooks.read import reading
from alignscope.metrics import Metric
from alignscope.models.loader import LoadedModel
from alignscope.models.registry import decoder_layers, get_arch, resolve_module
from alignscope.sites import Site

log = logging.getLogger(__name__)

PATCHABLE = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "head")
"""Components :func:`replay` can overwrite."""

ZERO = "zero"
"""Source name that writes zeros instead of another run's activations."""

ActKey = tuple[str, int]


@dataclass(frozen=True)
class BlockCall:
    """The positional (after the hidden states) and keyword arguments one block was called with."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class RunRecord:
    """One recorded forward pass of a single, un-padded prompt.

    Attributes:
        input_ids: ``(1, seq)`` token ids.
        resid_pre: ``(n_layers, seq, d_model)`` residual each block received (before its own hooks).
        acts: ``(component, layer) -> (seq, d_model)`` activations; ``head`` is ``(seq, n_heads, d_head)``.
        calls: the arguments each block received, replayed by :func:`replay`.
        last_logits: ``(1, 1, vocab)`` logits at the last position.
    """

    input_ids: Int[torch.Tensor, "1 seq"]
    resid_pre: Float[torch.Tensor, "n_layers seq d_model"]
    acts: dict[ActKey, torch.Tensor]
    calls: tuple[BlockCall, ...]
    last_logits: Float[torch.Tensor, "1 1 vocab"]

    @property
    def seq_len(self) -> int:
        """Number of tokens."""
        return int(self.input_ids.shape[1])


@dataclass(frozen=True)
class Patch:
    """Overwrite one component in one layer of a replayed row.

    Attributes:
        layer: block index.
        component: one of :data:`PATCHABLE`.
        positions: token positions to overwrite; None means every position.
        head: for ``head``, the head to overwrite; None means all heads.
        source: name of the activation source in ``sources`` (``"zero"`` writes zeros).
    """

    layer: int
    component: str
    positions: tuple[int, ...] | None = None
    head: int | None = None
    source: str = "source"

    def __post_init__(self) -> None:
        if self.component not in PATCHABLE:
            raise InputError(f"cannot patch {self.component!r}; patchable components: {', '.join(PATCHABLE)}", field="component")


Row = Sequence[Patch]


@dataclass
class _Masks:
    """Per (layer, component, source): which (row, position[, head]) entries to overwrite."""

    n_rows: int
    seq: int
    n_heads: int
    masks: dict[tuple[int, str, str], torch.Tensor] = field(default_factory=dict)

    def add(self, row: int, patch: Patch) -> None:
        key = (patch.layer, patch.component, patch.source)
        if key not in self.masks:
            shape = (self.n_rows, self.seq, self.n_heads) if patch.component == "head" else (self.n_rows, self.seq)
            self.masks[key] = torch.zeros(shape, dtype=torch.bool)
        pos = slice(None) if patch.positions is None else list(patch.positions)
        if patch.component == "head" and patch.head is not None:
            self.masks[key][row, pos, patch.head] = True
        else:
            self.masks[key][row, pos] = True


def validate_components(lm: LoadedModel, components: Sequence[str]) -> None:
    """Check each component exists on ``lm`` (all layers have the same components)."""
    for comp in dict.fromkeys(components):
        Site(0, comp).validate(lm)


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output  # type: ignore[no-any-return]


def _accepts(fn: Any, name: str) -> bool:
    """Whether ``fn`` takes a parameter ``name`` (HF causal LMs take ``logits_to_keep``: unembed the last token only)."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def embed_input(lm: LoadedModel, ids: Sequence[int]) -> Float[torch.Tensor, "seq d_model"]:
    """The residual stream entering block 0 for one prompt (token and position embeddings, scaling)."""
    input_ids = torch.tensor([list(ids)], device=lm.device)
    with torch.no_grad():
        return lm.bridge(input_ids, attention_mask=torch.ones_like(input_ids), stop_at_layer=0)[0]  # type: ignore[no-any-return]


def _strip_cache(value: Any) -> Any:
    from transformers.cache_utils import Cache

    return None if isinstance(value, Cache) else value


def record_run(lm: LoadedModel, ids: Sequence[int], components: Sequence[str] = ()) -> RunRecord:
    """Run one prompt through the bridge and record what :func:`replay` needs.

    Any hook already attached to the model (e.g. embedding noise for causal tracing) applies.

    Args:
        lm: the loaded model.
        ids: token ids of one prompt (no padding).
        components: extra activations to keep at every layer (from :data:`PATCHABLE`).

    Returns:
        The :class:`RunRecord`.
    """
    if len(ids) == 0:
        raise InputError("cannot patch an empty prompt", field="prompt")
    layers = decoder_layers(lm.hf_model)
    calls: dict[int, BlockCall] = {}

    inputs: dict[int, torch.Tensor] = {}

    def grab_call(index: int) -> Any:
        def pre(_m: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            inputs[index] = args[0][0].detach()
            calls[index] = BlockCall(tuple(_strip_cache(a) for a in args[1:]),
                                     {k: _strip_cache(v) for k, v in kwargs.items()})
        return pre

    comps = list(dict.fromkeys(["resid_pre", *components]))
    validate_components(lm, comps)
    sites = [Site(i, comp) for i in range(len(layers)) for comp in comps]
    with HookHandle() as handles, reading(lm, sites, select=lambda _s, a: a[0].detach()) as got:
        for i, layer in enumerate(layers):
            handles.on_input(layer, grab_call(i), with_kwargs=True)
        input_ids = torch.tensor([list(ids)], device=lm.device)
        extra = {"logits_to_keep": 1} if _accepts(lm.hf_model.forward, "logits_to_keep") else {}
        with torch.no_grad():
            logits = lm.bridge(input_ids, attention_mask=torch.ones_like(input_ids), use_cache=False, **extra)
    for i in range(len(layers)):
        if "use_cache" in calls[i].kwargs:
            calls[i].kwargs["use_cache"] = False
    acts: dict[ActKey, torch.Tensor] = {(site.component, site.layer): act for site, act in got.items()}
    for i in range(len(layers)):
        if ("head", i) in acts:
            acts[("head", i)] = acts[("head", i)].reshape(len(ids), lm.n_heads, -1)
    # what each block received, before its own hooks (an intervention's resid_pre write happens inside the block)
    resid = torch.stack([inputs[i] for i in range(len(layers))])
    return RunRecord(input_ids, resid, acts, tuple(calls[i] for i in range(len(layers))), logits[:, -1:].detach())


def unembed_last(lm: LoadedModel, hidden: Float[torch.Tensor, "batch seq d_model"]) -> Float[torch.Tensor, "batch 1 vocab"]:
    """Final norm and unembedding of the last position (with the config's logit soft-capping, if any)."""
    spec = get_arch(lm.model_type)
    normed = resolve_module(lm.hf_model, spec.final_norm)(hidden[:, -1:])
    logits = lm.hf_model.get_output_embeddings()(normed)  # type: ignore[operator]
    cap = getattr(lm.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits  # type: ignore[no-any-return]


def run_block(lm: LoadedModel, record: RunRecord, layer: int, hidden: torch.Tensor) -> torch.Tensor:
    """Run decoder block ``layer`` on ``hidden`` ``(batch, seq, d)`` with the recorded arguments."""
    call = record.calls[layer]
    return _first(decoder_layers(lm.hf_model)[layer](hidden, *call.args, **call.kwargs))


def forward_from(lm: LoadedModel, record: RunRecord, hidden: torch.Tensor, start: int) -> torch.Tensor:
    """Finish a run from the residual ``hidden`` ``(batch, seq, d)`` entering block ``start``.

    Returns:
        ``(batch, 1, vocab)`` last-position logits. Differentiable (call under ``no_grad`` if not needed).
    """
    start_sequence(lm, record)
    for layer in range(start, lm.n_layers):
        hidden = run_block(lm, record, layer, hidden)
    return unembed_last(lm, hidden)


def start_sequence(lm: LoadedModel, record: RunRecord) -> None:
    """Tell the model's start hooks a new sequence begins (a stateful intervention resets), as a forward pass would."""
    run_start_hooks(lm.hf_model, input_ids=record.input_ids, use_cache=False)


def check_replay(lm: LoadedModel, record: RunRecord) -> None:
    """Replay the last block and compare with the recorded logits; fail loudly on a mismatch.

    This catches an architecture whose head does something :func:`unembed_last` does not.
    """
    with torch.no_grad():
        last = lm.n_layers - 1
        logits = forward_from(lm, record, record.resid_pre[last].unsqueeze(0), last)
    ref = record.last_logits
    scale = float(ref.abs().max()) or 1.0
    err = float((logits.float() - ref.float()).abs().max())
    if err > 1e-3 * scale + 1e-4:
        raise AlignscopeError(f"replaying the final block does not reproduce the model's logits (max diff {err:.3g}); "
                              f"patching is not supported for {lm.model_type!r} models")


def start_layer(row: Row, n_layers: int) -> int:
    """The earliest layer a row patches (``n_layers - 1`` for a row without patches)."""
    return min((p.layer for p in row), default=n_layers - 1)


def replay(
    lm: LoadedModel,
    target: RunRecord,
    rows: Sequence[Row],
    sources: Mapping[str, Mapping[ActKey, torch.Tensor]],
    metric: Metric,
    *,
    max_batch_tokens: int = 4096,
    progress: bool = False,
) -> Float[torch.Tensor, " rows"]:
    """Evaluate ``metric`` on every patched variant (row) of the ``target`` run.

    Args:
        lm: the loaded model.
        target: the recorded run that rows modify.
        rows: each row is a list of :class:`Patch`; an empty row reproduces ``target``. Rows
            whose patches all write values bit-identical to the target's own are not run:
            they get the target run's metric.
        sources: activation sources by name, each ``(component, layer) -> (seq, ...)`` as in
            :attr:`RunRecord.acts`; ``"zero"`` needs no entry.
        metric: maps ``(rows, 1, vocab)`` logits to ``(rows,)``.
        max_batch_tokens: rows are processed in chunks of at most this many tokens.
        progress: show a progress bar over chunks.

    Returns:
        ``(n_rows,)`` metric values, float32 on CPU, in the order of ``rows``.
    """
    n_layers = lm.n_layers
    validate_components(lm, [p.component for row in rows for p in row])
    for row in rows:
        for p in row:
            _validate_patch(lm, target, p, sources)
    # A row that writes exactly what the target run already has cannot change anything.
    live = [r for r, row in enumerate(rows) if not all(_is_noop(p, target, sources) for p in row) or not row]
    out = torch.full((len(rows),), float(metric(target.last_logits)[0]))
    log.debug("replay: %d of %d rows need a forward pass", len(live), len(rows))
    if not live:
        return out
    order = sorted(live, key=lambda r: start_layer(rows[r], n_layers))
    per_chunk = max(1, max_batch_tokens // target.seq_len)
    chunks = [order[i:i + per_chunk] for i in range(0, len(order), per_chunk)]
    for chunk in tqdm(chunks, desc="patching", disable=not progress or len(chunks) < 2, leave=False):
        values = _replay_chunk(lm, target, [rows[r] for r in chunk], sources, metric)
        out[torch.tensor(chunk)] = values.detach().float().cpu()
    return out


def _validate_patch(lm: LoadedModel, target: RunRecord, patch: Patch, sources: Mapping[str, Mapping[ActKey, torch.Tensor]]) -> None:
    if not 0 <= patch.layer < lm.n_layers:
        raise InputError(f"patch layer {patch.layer} out of range 0..{lm.n_layers - 1}", field="layer")
    if patch.head is not None and not 0 <= patch.head < lm.n_heads:
        raise InputError(f"patch head {patch.head} out of range 0..{lm.n_heads - 1}", field="head")
    if patch.positions is not None and any(not -target.seq_len <= q < target.seq_len for q in patch.positions):
        raise InputError(f"patch positions {patch.positions} out of range for a {target.seq_len}-token prompt", field="positions")
    if patch.source != ZERO and (patch.component, patch.layer) not in sources.get(patch.source, {}):
        raise InputError(f"no {patch.source!r} activations for {patch.component}@{patch.layer}", field="sources")


def _is_noop(patch: Patch, target: RunRecord, sources: Mapping[str, Mapping[ActKey, torch.Tensor]]) -> bool:
    """Whether ``patch`` writes values bit-identical to the target run's own (so it changes nothing)."""
    key = (patch.component, patch.layer)
    if key not in target.acts:
        return False
    current = target.acts[key]
    new = torch.zeros_like(current) if patch.source == ZERO else sources[patch.source][key]
    pos = slice(None) if patch.positions is None else list(patch.positions)
    if patch.component == "head" and patch.head is not None:
        return torch.equal(current[pos, patch.head], new[pos, patch.head])
    return torch.equal(current[pos], new[pos])


def _replay_chunk(lm: LoadedModel, target: RunRecord, rows: Sequence[Row],
                  sources: Mapping[str, Mapping[ActKey, torch.Tensor]], metric: Metric) -> torch.Tensor:
    """Staircase over one chunk of rows sorted by start layer."""
    n_layers = lm.n_layers
    starts = [start_layer(r, n_layers) for r in rows]
    masks = _Masks(len(rows), target.seq_len, lm.n_heads)
    for i, row in enumerate(rows):
        for p in row:
            masks.add(i, p)
    bridge = BridgeTarget(lm)
    start_sequence(lm, target)
    with HookHandle() as handles, torch.no_grad():
        for (layer, comp, source), mask in masks.masks.items():
            value = None if source == ZERO else sources[source][(comp, layer)]
            handles.add(bridge.register(Site(layer, comp), _overwrite_hook(mask.to(lm.device), value, comp, lm.n_heads)))
        hidden: torch.Tensor | None = None
        for layer in range(starts[0], n_layers):
            joining = sum(1 for s in starts if s == layer)
            if joining:
                fresh = target.resid_pre[layer].unsqueeze(0).expand(joining, -1, -1)
                hidden = fresh.clone() if hidden is None else torch.cat([hidden, fresh])
            assert hidden is not None
            hidden = run_block(lm, target, layer, hidden)
        assert hidden is not None
        return metric(unembed_last(lm, hidden))


def _overwrite_hook(mask: torch.Tensor, value: torch.Tensor | None, comp: str, n_heads: int) -> Any:
    """A forward hook writing ``value`` where ``mask`` is set, for the rows currently in the batch.

    Rows join the batch in mask order, so the first ``batch`` rows of the mask are the live ones.
    """

    def hook(_m: torch.nn.Module, _i: Any, out: torch.Tensor) -> torch.Tensor:
        m = mask[: out.shape[0]]
        if not bool(m.any()):
            return out
        act = out.reshape(*out.shape[:2], n_heads, -1) if comp == "head" else out
        src = torch.zeros_like(act[:1]) if value is None else value.to(act.dtype).unsqueeze(0)
        patched = torch.where(m.unsqueeze(-1), src, act)
        return patched.reshape(out.shape)

    return hook
