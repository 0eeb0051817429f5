"""Simple stand-ins for the steering package's selection and search (framework tests only)."""

from __future__ import annotations

from typing import Any

from alignscope.pipeline.context import Context, StageOutput
from alignscope.pipeline.store import StageRecord


def stub_select(ctx: Context, extract: StageRecord) -> StageOutput:
    """Pick the largest-norm candidate; the grid is the norm."""
    dirs = extract.tensors["directions"]  # (P, L, d)
    norms = dirs.norm(dim=-1)
    p, layer = divmod(int(norms.argmax()), norms.shape[1])
    positions, layers = extract.output["positions"], extract.output["layers"]
    table = [{"layer": layers[j], "position": positions[i], "norm": float(norms[i, j]), "filtered": False}
             for i in range(len(positions)) for j in range(len(layers))]
    grid = {"key": "norm", "name": "norm", "layers": layers, "positions": positions, "values": norms.T.tolist()}
    best = {"layer": layers[layer], "position": positions[p]}
    return StageOutput({"best": best, "table": table, "grids": [grid], "sort_key": "norm"}, {"direction": dirs[p, layer]})


def stub_intervene(ctx: Context, extract: StageRecord, selection: StageRecord, target: str) -> StageOutput:
    """Add the chosen direction (times 3) at its layer."""
    from alignscope.steering.intervention_io import save_intervention
    from alignscope.steering.interventions import ActivationAddition

    best: dict[str, Any] = selection.output["best"]
    iv = ActivationAddition(selection.tensors["direction"], layers=(int(best["layer"]),), coefficient=3.0)
    save_intervention(ctx.out / target, iv, model=ctx.lm.name)
    return StageOutput({"kind": iv.kind, "description": f"addition x3 at layer {best['layer']}", "search": {"coefficients": [{"coefficient": 3.0}]}},
                       files=(target,))
