"""Edge attribution (EAP / EAP-IG style) between whole components: which writes feed which reads.

Nodes are the embedding, each layer's attention and MLP outputs, and the logits. On a
residual-stream model every component reads the sum of what earlier components wrote, so the
effect of the edge ``u -> v`` is estimated as ``sum_pos delta_u(pos) . g_v(pos)``, where
``delta_u`` is ``u``'s output on the clean run minus the corrupt run and ``g_v`` is the gradient
of the metric with respect to ``v``'s input *through v only* (the input of its pre-norm), averaged
along the integrated-gradients path (``ig_steps``; 0 = the corrupt run only, as in EAP).

Needs sequential attention and MLP (not parallel-attention models such as Falcon or GPT-NeoX,
where attention and MLP share one input norm).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from alignscope.circuits.attribution import frozen_weights, grab_activations, ig_alphas
from alignscope.circuits.patching import record_pair
from alignscope.circuits.replay import forward_from
from alignscope.errors import InputError
from alignscope.metrics import Metric
from alignscope.models.loader import LoadedModel
from alignscope.models.registry import get_arch

_READS = {"attn": "blocks.{layer}.ln1.hook_in", "mlp": "blocks.{layer}.ln2.hook_in", "logits": "ln_final.hook_in"}


@dataclass(frozen=True)
class EdgeAttribution:
    """Component nodes with attribution scores and scored edges between them.

    Attributes:
        nodes: node ids in order: ``embed``, ``attn@L0``, ``mlp@L0``, ..., ``logits``.
        node_scores: estimated effect of patching each node's whole output (``logits``: the sum
            of its incoming edges).
        edges: ``(source, target, score)`` for every valid edge.
        seconds: wall time (model load excluded).
    """

    nodes: list[str]
    node_scores: dict[str, float]
    edges: list[tuple[str, str, float]]
    clean_metric: float
    corrupt_metric: float
    ig_steps: int
    seconds: float


def _reads(lm: LoadedModel) -> list[tuple[str, str]]:
    out = []
    for layer in range(lm.n_layers):
        out += [(f"attn@L{layer}", _READS["attn"].format(layer=layer)), (f"mlp@L{layer}", _READS["mlp"].format(layer=layer))]
    return [*out, ("logits", _READS["logits"])]


def _order(node: str) -> float:
    """Position of a node in the forward pass (attention before MLP within a layer)."""
    if node == "embed":
        return -1.0
    if node == "logits":
        return float("inf")
    kind, layer = node.split("@L")
    return int(layer) + (0.5 if kind == "mlp" else 0.0)


def edge_attribution(lm: LoadedModel, clean_ids: Sequence[int], corrupt_ids: Sequence[int], *, metric: Metric,
                     ig_steps: int = 8) -> EdgeAttribution:
    """Score every edge between whole components (see the module docstring).

    Raises:
        InputError: a parallel-attention architecture (no separate MLP input).
    """
    if get_arch(lm.model_type).parallel_attn or "blocks.0.ln2.hook_in" not in lm.bridge.hook_dict:
        raise InputError(f"edge attribution needs sequential attention and MLP; {lm.model_type!r} runs them in parallel", field="edges")
    start = time.perf_counter()
    clean, corrupt = record_pair(lm, clean_ids, corrupt_ids, ["attn_out", "mlp_out"])
    writes = {"embed": clean.resid_pre[0] - corrupt.resid_pre[0]}
    for layer in range(lm.n_layers):
        writes[f"attn@L{layer}"] = clean.acts[("attn_out", layer)] - corrupt.acts[("attn_out", layer)]
        writes[f"mlp@L{layer}"] = clean.acts[("mlp_out", layer)] - corrupt.acts[("mlp_out", layer)]
    grads = _read_gradients(lm, corrupt, clean, metric, ig_steps)
    edges = [(u, v, float((writes[u].float() * grads[v].float()).sum()))
             for v in grads for u in writes if _order(u) < _order(v)]
    node_scores = _node_scores(writes, grads, edges)
    return EdgeAttribution(["embed", *[n for n, _ in _reads(lm)]], node_scores, edges,
                           float(metric(clean.last_logits)[0]), float(metric(corrupt.last_logits)[0]), ig_steps,
                           time.perf_counter() - start)


def _node_scores(writes: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], edges: list[tuple[str, str, float]]) -> dict[str, float]:
    """A writer's score is its delta times the gradient of everything downstream (its direct edge to the logits
    plus its edges to later readers); ``logits`` gets the sum of its incoming edges."""
    scores = {u: 0.0 for u in writes}
    for u, _, s in edges:
        scores[u] += s
    scores["logits"] = sum(s for _, v, s in edges if v == "logits")
    return scores


def _read_gradients(lm: LoadedModel, target: Any, source: Any, metric: Metric, ig_steps: int) -> dict[str, torch.Tensor]:
    """Mean gradient of the metric w.r.t. each reader's input along the embedding interpolation path."""
    alphas = ig_alphas(ig_steps).to(target.resid_pre.device)
    start0, end0 = target.resid_pre[0], source.resid_pre[0]
    hidden = (start0 + alphas.to(start0.dtype)[:, None, None] * (end0 - start0)).requires_grad_(True)
    reads = _reads(lm)
    with frozen_weights(lm.hf_model), torch.enable_grad():
        grabbed = grab_activations(lm, [], lambda: metric(forward_from(lm, target, hidden, 0)).sum().backward(),
                                    extra_hooks=[name for _, name in reads])
    out = {}
    seq = target.seq_len
    for node, name in reads:
        act = grabbed[(name, -1)]
        g = act.grad if act.grad is not None else torch.zeros_like(act)
        g = g.sum(0) / len(alphas)
        # Only the last position is unembedded: earlier positions get no gradient from the logits.
        out[node] = torch.cat([g.new_zeros(seq - g.shape[0], g.shape[1]), g]) if g.shape[0] < seq else g
    return out
