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

import torch

from alignscope.circuits.gradients import path_gradients
from alignscope.circuits.pairs import check_aligned
from alignscope.errors import InputError
from alignscope.hooks.points import hook_table
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
                     ig_steps: int = 5) -> EdgeAttribution:
    """Score every edge between whole components (see the module docstring).

    Raises:
        InputError: a parallel-attention architecture (no separate MLP input).
    """
    if get_arch(lm.model_type).parallel_attn or "blocks.0.ln2.hook_in" not in hook_table(lm):
        raise InputError(f"edge attribution needs sequential attention and MLP; {lm.model_type!r} runs them in parallel", field="edges")
    start = time.perf_counter()
    check_aligned(lm.tokenizer, clean_ids, corrupt_ids)
    reads = _reads(lm)
    path = path_gradients(lm, corrupt_ids, clean_ids, ["attn_out", "mlp_out"], metric, ig_steps, extra_hooks=[n for _, n in reads])
    writes = {"embed": path.source_embed - path.target_embed}
    for layer in range(lm.n_layers):
        for kind in ("attn", "mlp"):
            key = (f"{kind}_out", layer)
            writes[f"{kind}@L{layer}"] = path.source_acts[key] - path.target_acts[key]
    grads = {node: _pad(path.grads[(name, -1)], len(corrupt_ids)) for node, name in reads}
    edges = [(u, v, float((writes[u].float() * grads[v].float()).sum()))
             for v in grads for u in writes if _order(u) < _order(v)]
    node_scores = _node_scores(writes, grads, edges)
    return EdgeAttribution(["embed", *[n for n, _ in reads]], node_scores, edges, path.source_metric, path.target_metric,
                           ig_steps, time.perf_counter() - start)


def _node_scores(writes: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], edges: list[tuple[str, str, float]]) -> dict[str, float]:
    """A writer's score is its delta times the gradient of everything downstream (its direct edge to the logits
    plus its edges to later readers); ``logits`` gets the sum of its incoming edges."""
    scores = {u: 0.0 for u in writes}
    for u, _, s in edges:
        scores[u] += s
    scores["logits"] = sum(s for _, v, s in edges if v == "logits")
    return scores


def _pad(grad: torch.Tensor, seq: int) -> torch.Tensor:
    """Left-pad a gradient to ``seq`` positions (a reader that only saw the last position)."""
    return torch.cat([grad.new_zeros(seq - grad.shape[0], *grad.shape[1:]), grad]) if grad.shape[0] < seq else grad
