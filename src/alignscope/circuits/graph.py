"""Circuit graphs: ranked components (nodes) and scored edges, as one JSON-ready object.

:func:`alignscope.reports.circuit_graph.write_graph` writes it as JSON, HTML and GraphML.

JSON schema ``alignscope.circuit_graph/v1`` (one object)::

    {
      "schema": "alignscope.circuit_graph/v1",
      "model": str,                 # model name
      "metric": str,                # e.g. "logit_diff(' Paris' - ' Rome')"
      "site": str,                  # resid_pre | attn_out | mlp_out | head | component (edge graphs)
      "method": str,                # activation | attribution | attribution-ig | edge-attribution-ig | ...
      "direction": str,             # denoise | noise
      "prompts": [{"clean": str, "corrupt": str, "answer": str, "foil": str, "id": str | null}],
      "tokens": [str],              # position labels (clean prompt tokens)
      "clean_metric": float, "corrupt_metric": float,
      "top_k": int,                 # nodes kept (largest |score|)
      "n_candidates": int,          # nodes ranked before the cut
      "nodes": [{"id": str, "component": str, "layer": int | null, "position": int | null,
                 "token": str | null, "head": int | null, "score": float, "rank": int}],
      "edges": [{"source": node id, "target": node id, "score": float}]
    }

``score`` is the node's patching effect (or attribution estimate): metric(patched) - metric(target
run). ``layer`` is null for the ``embed`` and ``logits`` nodes of edge graphs. Edges are present
when they were computed (:mod:`alignscope.circuits.edges`), else the list is empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alignscope.circuits.edges import EdgeAttribution
from alignscope.circuits.patching import PatchingResult

SCHEMA = "alignscope.circuit_graph/v1"


def _node_id(component: str, layer: int, col: int) -> str:
    return f"head@L{layer}.H{col}" if component == "head" else f"{component}@L{layer}.P{col}"


def graph_from_patching(result: PatchingResult, *, model: str, metric: str, prompts: Sequence[dict[str, Any]],
                        top_k: int = 20) -> dict[str, Any]:
    """Nodes for the ``top_k`` sites of a patching result with the largest ``|effect|`` (no edges)."""
    e = result.effect
    if e.ndim == 3:
        e = e.sum(-1)
    cands: list[dict[str, Any]] = []
    for layer in range(e.shape[0]):
        for col in range(e.shape[1]):
            is_head = result.component == "head"
            cands.append({"id": _node_id(result.component, layer, col), "component": result.component, "layer": layer,
                          "position": None if is_head else col,
                          "token": None if is_head or col >= len(result.tokens) else result.tokens[col],
                          "head": col if is_head else None, "score": float(e[layer, col])})
    nodes = sorted(cands, key=lambda n: -abs(n["score"]))[:top_k]
    for rank, node in enumerate(nodes, start=1):
        node["rank"] = rank
    return _envelope(model, metric, result.component, result.method, result.direction, prompts, result.tokens,
                     result.clean_metric, result.corrupt_metric, top_k, len(cands), nodes, [])


def graph_from_components(ranked: Sequence[tuple[Any, float]], *, site: str, model: str, metric: str,
                          prompts: Sequence[dict[str, Any]], tokens: Sequence[str], clean_metric: float, corrupt_metric: float,
                          top_k: int = 20) -> dict[str, Any]:
    """Nodes for the ``top_k`` ranked ablation components (:class:`~alignscope.circuits.ablation.Component`)."""
    nodes = []
    for rank, (comp, score) in enumerate(ranked[:top_k], start=1):
        nodes.append({"id": comp.label, "component": comp.component, "layer": comp.layer, "position": comp.position,
                      "token": None, "head": comp.head, "score": float(score), "rank": rank})
    return _envelope(model, metric, site, "activation", "denoise", prompts, tokens, clean_metric, corrupt_metric, top_k,
                     len(ranked), nodes, [])


def graph_from_edges(edges: EdgeAttribution, *, model: str, metric: str, prompts: Sequence[dict[str, Any]],
                     tokens: Sequence[str], top_k: int = 30) -> dict[str, Any]:
    """The ``top_k`` edges with the largest ``|score|`` and the nodes they touch."""
    kept = sorted(edges.edges, key=lambda t: -abs(t[2]))[:top_k]
    used = {n for u, v, _ in kept for n in (u, v)}
    order = [n for n in edges.nodes if n in used]
    ranked = sorted(order, key=lambda n: -abs(edges.node_scores.get(n, 0.0)))
    nodes = []
    for name in order:
        kind, _, layer = name.partition("@L")
        nodes.append({"id": name, "component": {"attn": "attn_out", "mlp": "mlp_out"}.get(kind, kind),
                      "layer": int(layer) if layer else None, "position": None, "token": None, "head": None,
                      "score": float(edges.node_scores.get(name, 0.0)), "rank": ranked.index(name) + 1})
    return _envelope(model, metric, "component", "edge-attribution" + ("-ig" if edges.ig_steps else ""), "denoise", prompts,
                     tokens, edges.clean_metric, edges.corrupt_metric, top_k, len(edges.edges), nodes,
                     [{"source": u, "target": v, "score": s} for u, v, s in kept])


def _envelope(model: str, metric: str, site: str, method: str, direction: str, prompts: Sequence[dict[str, Any]],
              tokens: Sequence[str], clean: float, corrupt: float, top_k: int, n_candidates: int,
              nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schema": SCHEMA, "model": model, "metric": metric, "site": site, "method": method, "direction": direction,
            "prompts": [dict(p) for p in prompts], "tokens": list(tokens), "clean_metric": clean, "corrupt_metric": corrupt,
            "top_k": top_k, "n_candidates": n_candidates, "nodes": nodes, "edges": edges}


def to_networkx(graph: dict[str, Any]) -> Any:
    """A ``networkx.DiGraph`` with node and edge attributes (None values left out)."""
    import networkx as nx

    g = nx.DiGraph(schema=graph["schema"], model=graph["model"], metric=graph["metric"], site=graph["site"], method=graph["method"])
    for node in graph["nodes"]:
        g.add_node(node["id"], **{k: v for k, v in node.items() if k != "id" and v is not None})
    for edge in graph["edges"]:
        g.add_edge(edge["source"], edge["target"], score=edge["score"])
    return g
