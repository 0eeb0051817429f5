"""The run stages that steer: direction selection, building the intervention (the conscience search), comparisons.

Everything the run needs from the steering package goes through these three functions, which
turn its results into JSON-ready stage outputs (the candidate grid for the heatmap, the full
table, the chosen candidate, the search table).
"""

from __future__ import annotations

from typing import Any

import torch

from alignscope.errors import InputError
from alignscope.pipeline.context import Context, StageOutput
from alignscope.pipeline.data import round_robin
from alignscope.pipeline.store import StageRecord
from alignscope.recipes.conscience import fit_conscience
from alignscope.steering.directions import MeanDiff
from alignscope.steering.intervention_io import save_intervention
from alignscope.steering.interventions import ActivationAddition, DirectionalAblation, Intervention
from alignscope.steering.selection import select_direction


def mean_diff_from(record: StageRecord, positions: list[int] | None = None, layer_stride: int = 1) -> Any:
    """Rebuild the extract stage's :class:`~alignscope.steering.directions.MeanDiff`, optionally a subset of it.

    Args:
        record: the extract stage's record.
        positions: offsets to keep (None: all); each must have been extracted.
        layer_stride: keep every ``layer_stride``-th extracted layer, starting at the first.
    """
    out, t = record.output, record.tensors
    all_pos, all_layers = list(out["positions"]), list(out["layers"])
    keep_pos = all_pos if positions is None else list(dict.fromkeys(positions))
    missing = [p for p in keep_pos if p not in all_pos]
    if missing:
        raise InputError(f"positions {missing} were not extracted; extracted positions: {all_pos}", field="select.positions")
    pi = [all_pos.index(p) for p in keep_pos]
    li = list(range(0, len(all_layers), layer_stride))

    def sub(x: torch.Tensor) -> torch.Tensor:
        return x[pi][:, li].contiguous()

    return MeanDiff(sub(t["directions"]), sub(t["mean_pos"]), sub(t["mean_neg"]), tuple(keep_pos), tuple(all_layers[i] for i in li),
                    out["component"], int(out["n_pos"]), int(out["n_neg"]), out.get("data_sha256", ""))


GRIDS = (
    ("bypass", "bypass: harmful refusal log-odds with the direction ablated (lower = stronger)"),
    ("induce", "induce: harmless refusal log-odds with the direction added (higher = stronger)"),
    ("kl", "kl: harmless first-token KL when ablated (nats)"),
)


def select(ctx: Context, extract: StageRecord) -> StageOutput:
    """Score every candidate on val prompts with :func:`~alignscope.steering.selection.select_direction`.

    Output: ``best`` (the chosen row), ``table`` (every candidate), ``grids`` (layers x positions
    per score, for heatmaps), ``baseline`` refusal scores; tensors: the chosen ``direction``.
    """
    c = ctx.cfg.select
    config = c.selection(chat=ctx.cfg.chat)
    candidates = mean_diff_from(extract, c.positions, c.layer_stride)
    sel = select_direction(ctx.lm, candidates, round_robin(ctx.data.harmful["val"], c.n_harmful),
                           round_robin(ctx.data.harmless["val"], c.n_harmless), config=config, progress=ctx.progress)
    grids = [{"key": key, "name": name, "layers": list(sel.layers), "positions": list(sel.positions),
              "values": sel.heatmap(key).T.tolist()} for key, name in GRIDS]
    output = {"best": sel.chosen, "table": sel.rows, "grids": grids, "sort_key": "bypass", "sort_ascending": True,
              "baseline": sel.baseline, "config": sel.config, "search_seconds": sel.seconds}
    return StageOutput(output, {"direction": sel.direction}, provenance=("search_seconds",))


def intervene(ctx: Context, extract: StageRecord, selection: StageRecord, target: str) -> StageOutput:
    """Build the intervention the config asks for and save it to ``ctx.out / target``.

    ``conditional``: :func:`~alignscope.steering.conscience.fit_conscience` on train/val (the
    selective "conscience"); ``addition``/``ablation``: the selected direction, unconditionally.
    """
    cfg = ctx.cfg.intervene
    if cfg.kind == "conditional":
        iv, output = _fit_conscience(ctx)
    else:
        coefficient = cfg.library_kwargs().get("coefficients", (1.0,))[0]  # the first one set, else 1
        iv = unconditional_intervention(ctx, cfg.kind, {"extract": extract, "select": selection}, coefficient=coefficient)
        best = selection.output["best"]
        output = {"kind": iv.kind, "params": {"layer": best.get("layer"), "position": best.get("position")},
                  "description": f"{cfg.kind} of the selected direction (layer {best.get('layer')}, position {best.get('position')})",
                  "search": {}}
    save_intervention(ctx.out / target, iv, model=ctx.lm.name)
    return StageOutput(output, files=(target,), provenance=("search_seconds",))


def _fit_conscience(ctx: Context) -> tuple[Any, dict[str, Any]]:
    d = ctx.data
    fit = fit_conscience(ctx.lm, d.harmful["train"], d.harmless["train"], d.harmful["val"], d.harmless["val"],
                         lookalike_train=d.lookalike["train"] or None, lookalike_val=d.lookalike["val"] or None,
                         config=ctx.cfg.intervene.conscience(seed=ctx.cfg.seed))
    iv, table = fit.intervention, fit.table
    chosen = table.get("chosen", {})
    description = (f"conditional steering: refusal-mode vector x{chosen.get('coefficient')} at layer {chosen.get('steer_layer')}, "
                   f"gated by a logistic probe on layers {chosen.get('probe_layers')} (threshold {_fmt(chosen.get('threshold'))})"
                   + ("; where the gate is off, the vector's direction is ablated at every layer"
                      if chosen.get("off_branch") == "ablate" else ""))
    search = {"behaviour vector: unconditional refusal on val harmful": table.get("behaviour", []),
              "condition probe: out-of-fold (train+val)": table.get("probe", []),
              "condition probe: out-of-fold gate rate per held-out category and style (chosen probe)": table.get("held_out", [])}
    return iv, {"kind": iv.kind, "params": chosen, "description": description, "search": search,
                "search_seconds": table.get("seconds")}


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def unconditional_intervention(ctx: Context, kind: str, deps: dict[str, StageRecord], coefficient: float = 1.0) -> Intervention:
    """An unconditional addition or ablation of the selected direction (the run's intervention for those kinds, and a comparison)."""

    best = deps["select"].output["best"]
    direction: torch.Tensor = deps["select"].tensors["direction"]
    if kind == "ablation":
        return DirectionalAblation(direction)
    return ActivationAddition(direction, layers=(int(best["layer"]),), coefficient=coefficient, component=deps["extract"].output["component"])
