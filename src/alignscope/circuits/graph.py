"""Circuit graphs: ranked components (nodes) and scored edges, exported as JSON, HTML and GraphML.

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

The HTML diagram is self-contained (plotly embedded, works offline): nodes are placed at
(position or head, layer), coloured and sized by score, with hover details; edges are drawn
with a width proportional to ``|score|``. Every text that comes from data is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alignscope.circuits.edges import EdgeAttribution
from alignscope.circuits.patching import PatchingResult
from alignscope.io import atomic_write_json, atomic_write_text
from alignscope.reports.html import Page

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


def write_graph(graph: dict[str, Any], out_dir: str | Path, *, stem: str = "circuit", graphml: bool = True) -> dict[str, Path]:
    """Write ``{stem}.json``, ``{stem}.html`` and (optionally) ``{stem}.graphml`` atomically."""
    import networkx as nx

    out = Path(out_dir)
    paths = {"json": out / f"{stem}.json", "html": out / f"{stem}.html"}
    atomic_write_json(paths["json"], graph)
    render_html(graph).write(paths["html"])
    if graphml:
        paths["graphml"] = out / f"{stem}.graphml"
        atomic_write_text(paths["graphml"], "\n".join(nx.generate_graphml(to_networkx(graph))) + "\n")
    return paths


def _xy(node: dict[str, Any], n_layers: int) -> tuple[float, float]:
    """Diagram coordinates: x = position/head (or attn 0 / mlp 1), y = layer (embed below, logits above)."""
    if node["layer"] is None:
        return (0.5, -1.0 if node["component"] == "embed" else float(n_layers))
    if node["head"] is not None:
        return (float(node["head"]), float(node["layer"]))
    if node["position"] is not None:
        return (float(node["position"]), float(node["layer"]))
    return (0.0 if node["component"] == "attn_out" else 1.0, float(node["layer"]) + (0.5 if node["component"] == "mlp_out" else 0.0))


def render_html(graph: dict[str, Any]) -> Page:
    """The interactive, self-contained diagram and node/edge tables."""
    nodes = graph["nodes"]
    n_layers = 1 + max((n["layer"] for n in nodes if n["layer"] is not None), default=0)
    pos = {n["id"]: _xy(n, n_layers) for n in nodes}
    vmax = max((abs(n["score"]) for n in nodes), default=1.0) or 1.0
    emax = max((abs(e["score"]) for e in graph["edges"]), default=1.0) or 1.0
    traces: list[dict[str, Any]] = []
    for e in graph["edges"]:
        (x0, y0), (x1, y1) = pos[e["source"]], pos[e["target"]]
        traces.append({"type": "scatter", "mode": "lines", "x": [x0, x1], "y": [y0, y1], "hoverinfo": "skip", "showlegend": False,
                       "line": {"width": 0.5 + 6 * abs(e["score"]) / emax, "color": "#d6604d" if e["score"] > 0 else "#4393c3"},
                       "opacity": 0.6})
    hover = [html.escape(f"{n['id']} token={n['token']!r} score={n['score']:.4g} rank={n['rank']}") for n in nodes]
    traces.append({"type": "scatter", "mode": "markers+text", "x": [pos[n["id"]][0] for n in nodes],
                   "y": [pos[n["id"]][1] for n in nodes], "text": [html.escape(n["id"]) for n in nodes], "textposition": "top center",
                   "hovertext": hover, "hoverinfo": "text", "showlegend": False,
                   "marker": {"size": [10 + 30 * abs(n["score"]) / vmax for n in nodes], "color": [n["score"] for n in nodes],
                              "colorscale": "RdBu", "reversescale": True, "cmin": -vmax, "cmax": vmax,
                              "colorbar": {"title": {"text": "score"}}, "line": {"width": 1, "color": "#333"}}})
    xaxis: dict[str, Any] = {"title": {"text": "head" if graph["site"] == "head" else ("position" if graph["site"] != "component" else "")}}
    if graph["site"] not in ("head", "component") and graph["tokens"]:
        xaxis.update({"tickmode": "array", "tickvals": list(range(len(graph["tokens"]))),
                      "ticktext": [html.escape(t) for t in graph["tokens"]]})
    figure = {"data": traces, "layout": {"height": 700, "xaxis": xaxis, "yaxis": {"title": {"text": "layer"}},
                                         "title": {"text": html.escape(f"{graph['site']} circuit ({graph['method']})")}}}
    page = Page(f"Circuit: {graph['model']}", subtitle=f"metric {graph['metric']}; clean {graph['clean_metric']:.4g}, "
                                                       f"corrupt {graph['corrupt_metric']:.4g}; schema {graph['schema']}")
    page.add_figure(figure)
    page.add_heading("Nodes")
    page.add_table(["rank", "id", "layer", "position", "token", "head", "score"],
                   [[n["rank"], n["id"], n["layer"], n["position"], n["token"], n["head"], n["score"]] for n in nodes])
    if graph["edges"]:
        page.add_heading("Edges")
        page.add_table(["source", "target", "score"], [[e["source"], e["target"], e["score"]] for e in graph["edges"]])
    page.add_heading("Prompts")
    page.add_table(["clean", "corrupt", "answer", "foil"], [[p.get("clean"), p.get("corrupt"), p.get("answer"), p.get("foil")]
                                                            for p in graph["prompts"]])
    return page
