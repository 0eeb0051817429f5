"""Circuit graphs written as JSON, a self-contained HTML diagram and GraphML.

The HTML diagram is self-contained (plotly embedded, works offline): nodes are placed at
(position or head, layer), coloured and sized by score, with hover details; edges are drawn
with a width proportional to ``|score|``. Every text that comes from data is escaped. The graph
object's schema is in :mod:`alignscope.circuits.graph`.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from alignscope.circuits.graph import to_networkx
from alignscope.io import atomic_write_json, atomic_write_text
from alignscope.reports.html import Page


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
