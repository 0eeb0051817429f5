"""The pipeline's seam to :mod:`alignscope.steering`: selection, the intervention search, comparisons.

Everything the run needs from the steering package goes through these three functions, which
turn its results into JSON-ready stage outputs (the candidate grid for the heatmap, the full
table, the chosen candidate, the search table).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from alignscope.pipeline.store import StageRecord

if TYPE_CHECKING:
    from alignscope.pipeline.stages import Context, StageOutput


def mean_diff_from(record: StageRecord) -> Any:
    """Rebuild the extract stage's :class:`~alignscope.steering.directions.MeanDiff`."""
    from alignscope.steering.directions import MeanDiff

    out, t = record.output, record.tensors
    return MeanDiff(t["directions"], t["mean_pos"], t["mean_neg"], tuple(out["positions"]), tuple(out["layers"]), out["component"],
                    int(out["n_pos"]), int(out["n_neg"]), out.get("data_sha256", ""))


def select(ctx: Context, extract: StageRecord) -> StageOutput:
    """Run the steering package's candidate selection on the val split."""
    raise NotImplementedError("waiting for alignscope.steering.selection")


def intervene(ctx: Context, extract: StageRecord, selection: StageRecord, target: str) -> StageOutput:
    """Run the steering package's intervention search and save the result to ``ctx.out / target``."""
    raise NotImplementedError("waiting for alignscope.steering.conscience")


def comparison(ctx: Context, kind: str, deps: dict[str, StageRecord]) -> Any:
    """An unconditional intervention built from the selected direction, to compare against."""
    from alignscope.steering.interventions import ActivationAddition, DirectionalAblation

    best = deps["select"].output["best"]
    direction: torch.Tensor = deps["select"].tensors["direction"]
    if kind == "ablation":
        return DirectionalAblation(direction)
    return ActivationAddition(direction, layers=(int(best["layer"]),), coefficient=1.0, component=deps["extract"].output["component"])
