"""The stages of the refusal study. Each returns JSON-ready output plus optional tensors/files.

Stage functions take the run :class:`Context` and the records of the stages they depend on;
they never read a split they should not: train fits, val chooses, test only reports.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from alignscope.evals.behaviour import RefusalEval, evaluate_refusal
from alignscope.evals.capability import kl_summary
from alignscope.evals.json_types import parse
from alignscope.evals.study import (
    Curves,
    DataSummary,
    Directions,
    Example,
    InterventionSummary,
    ModelInfo,
    SelectionSummary,
    SplitData,
    StageTiming,
    StudyResults,
)
from alignscope.evals.study_evals import EvalSummary, GateSummary, KlSummary
from alignscope.io import atomic_write_bytes, atomic_write_json, atomic_write_text, jsonable
from alignscope.metrics import kl_divergence
from alignscope.models.loader import resolve_source
from alignscope.pipeline import steering_stages
from alignscope.pipeline.context import Context, StageOutput
from alignscope.pipeline.store import StageRecord
from alignscope.reports.refusal_report import build_refusal_report
from alignscope.stats import rate
from alignscope.steering.conditional import ConditionalSteering, gate_scores
from alignscope.steering.directions import diff_in_means
from alignscope.steering.intervention_io import load_intervention
from alignscope.steering.interventions import Intervention

log = logging.getLogger(__name__)

INTERVENTION_FILE = "stages/intervene.intervention.safetensors"
EVAL_PROVENANCE = ("eval.seconds",)  # an evaluation's wall time: kept, but not in the content later stages chain on


def _evaluate(ctx: Context, intervention: Intervention | None) -> RefusalEval:
    ev = ctx.cfg.evaluate
    return evaluate_refusal(ctx.lm, ctx.data.test_set(), intervention=intervention, chat=ctx.cfg.chat, max_new_tokens=ev.max_new_tokens,
                            batch_size=ev.batch_size, detector=ctx.detector(), progress=ctx.progress, judge=ctx.judge())


def _harmless_rows(ev: RefusalEval) -> list[int]:
    return [i for i, p in enumerate(ev.prompts) if p.label == "harmless"]


def baseline(ctx: Context, deps: dict[str, StageRecord]) -> StageOutput:
    """Refusal on the test split with no intervention; keeps the harmless prompts' next-token logits for the KL."""
    ev = _evaluate(ctx, None)
    assert ev.first_logits is not None
    return StageOutput({"eval": ev.to_json(), "records": ev.records()}, {"harmless_logits": ev.first_logits[_harmless_rows(ev)]},
                       provenance=EVAL_PROVENANCE)


def extract(ctx: Context, deps: dict[str, StageRecord]) -> StageOutput:
    """Difference-in-means candidates (harmful minus harmless, train split) at every (position, layer)."""

    c = ctx.cfg.extract
    md = diff_in_means(ctx.lm, ctx.data.harmful["train"], ctx.data.harmless["train"], component=c.component, positions=c.positions,
                       chat=ctx.cfg.chat, batch_size=c.batch_size, progress=ctx.progress)
    output = {"component": md.component, "positions": list(md.positions), "layers": list(md.layers), "n_pos": md.n_pos,
              "n_neg": md.n_neg, "data_sha256": md.data_sha256}
    return StageOutput(output, {"directions": md.directions, "mean_pos": md.mean_pos, "mean_neg": md.mean_neg})


def select(ctx: Context, deps: dict[str, StageRecord]) -> StageOutput:
    """Filter and score the candidates on the val split; keep the full table and the chosen direction."""
    return steering_stages.select(ctx, deps["extract"])


def intervene(ctx: Context, deps: dict[str, StageRecord]) -> StageOutput:
    """Search the intervention on train/val and save it (``stages/intervene.intervention.safetensors``)."""
    return steering_stages.intervene(ctx, deps["extract"], deps["select"], INTERVENTION_FILE)


def evaluate(ctx: Context, deps: dict[str, StageRecord]) -> StageOutput:
    """Refusal on the test split under the intervention, first-token KL on harmless test prompts, comparisons.

    The KL compares the next-token distributions that the baseline's and this stage's greedy
    generations computed anyway (the first decoding step), so it costs no extra forward pass.
    """

    iv = load_intervention(ctx.out / INTERVENTION_FILE)
    ev = _evaluate(ctx, iv)
    assert ev.first_logits is not None
    kl_values = kl_divergence(deps["baseline"].tensors["harmless_logits"], ev.first_logits[_harmless_rows(ev)])
    kl = {**kl_summary(kl_values, seed=ctx.cfg.seed), "values": kl_values.tolist()}
    comparisons = {}
    for kind in ctx.cfg.evaluate.compare:
        other = steering_stages.unconditional_intervention(ctx, kind, deps)
        comparisons[kind] = _evaluate(ctx, other).to_json()
    records, gate = ev.records(), _gate_rates(ctx, iv, ev)
    if gate is not None:
        for row, fired, score in zip(records, gate.pop("fired"), gate.pop("scores"), strict=True):
            row["gate"], row["probe_score"] = fired, score
    return StageOutput({"eval": ev.to_json(), "records": records, "kl": kl, "comparisons": comparisons, "gate": gate},
                       provenance=EVAL_PROVENANCE)


def _gate_rates(ctx: Context, iv: Intervention, ev: RefusalEval) -> dict[str, Any] | None:
    """For a conditional intervention: how often its gate fires on the test prompts, per label (n, Wilson CI).

    Also how often a gated prompt was refused (steering that worked) and an ungated one was
    (the model's own refusals that the off branch did not remove).
    """

    if not isinstance(iv, ConditionalSteering):
        return None
    scores, fired = gate_scores(ctx.lm, iv, [p.prompt for p in ev.prompts], chat=ctx.cfg.chat,
                                batch_size=ctx.cfg.evaluate.batch_size)
    out: dict[str, Any] = {"threshold": iv.threshold, "by_label": {}, "fired": [bool(x) for x in fired.tolist()],
                           "scores": [float(x) for x in scores.tolist()]}
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(ev.prompts):
        groups.setdefault(str(p.label), []).append(i)
        if p.category == "lookalike":
            groups.setdefault("lookalike", []).append(i)
    for name, idx in groups.items():
        on = [i for i in idx if out["fired"][i]]
        off = [i for i in idx if not out["fired"][i]]
        out["by_label"][name] = {"gate": rate(len(on), len(idx)).as_dict(),
                                 "refused_when_gated": rate(sum(ev.refused[i] for i in on), len(on)).as_dict(),
                                 "refused_when_not_gated": rate(sum(ev.refused[i] for i in off), len(off)).as_dict()}
    return out


def direction_curves(extract_rec: StageRecord, chosen: dict[str, Any] | None) -> Curves:
    """Norm per layer and cosine similarities per layer, at the chosen position (else the last)."""
    out = extract_rec.output
    dirs = extract_rec.tensors["directions"]  # (P, L, d)
    positions, layers = out["positions"], out["layers"]
    p_idx = positions.index(chosen["position"]) if chosen and chosen.get("position") in positions else len(positions) - 1
    per_layer = dirs[p_idx]
    unit = per_layer / per_layer.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    to_chosen = None
    if chosen and chosen.get("layer") in layers:
        to_chosen = _finite((unit @ unit[layers.index(chosen["layer"])]).tolist())
    return Curves(tuple(layers), positions[p_idx], _finite(per_layer.norm(dim=-1).tolist()),
                  (None, *_finite((unit[1:] * unit[:-1]).sum(-1).tolist())), to_chosen)


def _finite(values: list[float]) -> tuple[float | None, ...]:
    """The values with NaN/inf as None (as ``results.json`` holds them)."""
    return tuple(jsonable(values))


def _examples(ctx: Context, before: list[dict[str, Any]], after: list[dict[str, Any]]) -> tuple[Example, ...]:
    """Up to ``n_examples`` test prompts, half harmful and half harmless, changed behaviour first."""
    n = ctx.cfg.report.n_examples
    rows = [Example(b["prompt"], b["label"], b["category"], b["generation"], a["generation"], b["refused"], a["refused"])
            for b, a in zip(before, after, strict=True)]
    picked: list[Example] = []
    for label in ("harmful", "harmless"):
        group = [r for r in rows if r.label == label]
        group.sort(key=lambda r: (r.refused_before == r.refused_after, r.category != "lookalike" if label == "harmless" else 0))
        picked.extend(group[: (n + 1) // 2 if label == "harmful" else n // 2])
    return tuple(picked)


def _stage_file(ctx: Context, stage: str) -> Path:
    """Where a stage's output sits, for errors: its checkpoint file."""
    return ctx.out / "stages" / f"{stage}.json"


def _stage_part(ctx: Context, records: dict[str, StageRecord], stage: str, key: str, tp: Any) -> Any:
    """A stage output's part read into its typed form ``tp`` (NaN/inf as None; errors name the stage file and the field)."""
    return parse(tp, jsonable(records[stage].output[key]), _stage_file(ctx, stage), f"output.{key}")


def assemble_results(ctx: Context, records: dict[str, StageRecord], weights: dict[str, Any], timings: dict[str, dict[str, Any]],
                     seconds: float) -> StudyResults:
    """The :class:`~alignscope.evals.study.StudyResults` (``results.json``) from the stage records."""
    sel = records["select"].output
    lm_info = records["extract"].output
    d_model = int(records["extract"].tensors["directions"].shape[-1])
    intervention = {**jsonable(records["intervene"].output), "file": "intervention.safetensors"}
    return StudyResults(
        model=ModelInfo(resolve_source(ctx.cfg.model)[0], len(lm_info["layers"]), d_model, weights.get("sha256")),
        config=jsonable(ctx.cfg.to_dict()),
        data=DataSummary({role: {split: SplitData(s["n"], s["sha256"]) for split, s in splits.items()}
                          for role, splits in ctx.data.summary().items()}),
        baseline=_stage_part(ctx, records, "baseline", "eval", EvalSummary),
        after=_stage_part(ctx, records, "evaluate", "eval", EvalSummary),
        kl=_stage_part(ctx, records, "evaluate", "kl", KlSummary),
        gate=_stage_part(ctx, records, "evaluate", "gate", GateSummary | None),
        comparisons=_stage_part(ctx, records, "evaluate", "comparisons", dict[str, EvalSummary]),
        directions=Directions(lm_info["component"], tuple(lm_info["positions"]), tuple(lm_info["layers"]), lm_info["n_pos"],
                              lm_info["n_neg"], direction_curves(records["extract"], sel.get("best"))),
        selection=parse(SelectionSummary, jsonable(sel), _stage_file(ctx, "select"), "output"),
        intervention=parse(InterventionSummary, intervention, _stage_file(ctx, "intervene"), "output"),
        examples=_examples(ctx, records["baseline"].output["records"], records["evaluate"].output["records"]),
        timings={name: StageTiming(t["seconds"], t["reused"]) for name, t in timings.items()},
        seconds=seconds,
    )


def write_outputs(ctx: Context, records: dict[str, StageRecord]) -> dict[str, Path]:
    """Copy the chosen intervention to ``intervention.safetensors`` and write generations side by side."""

    target = ctx.out / "intervention.safetensors"
    atomic_write_bytes(target, (ctx.out / INTERVENTION_FILE).read_bytes())
    before, after = records["baseline"].output["records"], records["evaluate"].output["records"]
    lines = [json.dumps({**b, "generation_after": a["generation"], "refused_after": a["refused"], "logit_score_after": a["logit_score"],
                         **{k: a[k] for k in ("gate", "probe_score") if k in a}},
                        ensure_ascii=False) for b, a in zip(before, after, strict=True)]
    gens = ctx.out / "generations.jsonl"
    atomic_write_text(gens, "\n".join(lines) + "\n")
    return {"intervention.safetensors": target, "generations.jsonl": gens}


def write_report(ctx: Context, results: StudyResults) -> dict[str, Path]:
    """The PNG plots and ``report.html``."""

    return build_refusal_report(results, ctx.out)


def write_results(ctx: Context, results: StudyResults) -> Path:
    """``results.json``: :meth:`StudyResults.to_json` (strict JSON: a value that is not a number is null)."""

    path = ctx.out / "results.json"
    atomic_write_json(path, results.to_json())
    return path
