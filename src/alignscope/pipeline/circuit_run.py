"""Run the refusal-circuit study stage by stage, resuming from checkpoints (the refusal study's stage store).

==========  ================================================================  ===================
stage       does                                                              depends on
==========  ================================================================  ===================
baseline    refusal rates in generation, harmful/harmless, per category       --
pairs       tokenise the pairs; shared post-instruction positions             --
patching    per-pair effects of every component, denoise and noise            pairs
rank        mean effect, bootstrap CI, causal fraction, top k, layers          patching
edges       edge attribution (EAP-IG) between the top components              pairs, rank
ablation    top-k and random-set ablation in generation on held-out prompts   pairs, rank
report      ``results.json``, CSVs, PNGs, ``report.html``, manifest            all
==========  ================================================================  ===================

A stage is reused when its record carries the same fingerprint: the config fields it reads, the
model's resume key (weights hash and dtype), the intervention file's hash, the pair file's hash
and the content of the upstream records (:mod:`alignscope.pipeline.store`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignscope.data.refusal_pairs import BUILTIN, builtin_pairs_path
from alignscope.io import sha256_file
from alignscope.models.identity import dtype_name, model_identity, resume_key, weights_hash
from alignscope.models.loader import resolve_device, resolve_dtype, resolve_source
from alignscope.pipeline import circuit_stages as cs
from alignscope.pipeline.circuit_config import CircuitRunConfig
from alignscope.pipeline.context import StageOutput
from alignscope.pipeline.manifest import write_manifest
from alignscope.pipeline.store import StageRecord, StageStore, fingerprint
from alignscope.reports.refusal_circuit import write_circuit_report

log = logging.getLogger(__name__)

StageFn = Callable[[cs.CircuitContext, dict[str, StageRecord]], StageOutput]


@dataclass(frozen=True)
class CircuitStage:
    """One stage: name, function, upstream stages, the config it reads."""

    name: str
    fn: StageFn
    deps: tuple[str, ...]
    reads: Callable[[CircuitRunConfig], Any]


def _no_batch(section: Any) -> dict[str, Any]:
    return {k: v for k, v in section.model_dump(mode="json").items() if k not in ("batch_size", "max_batch_tokens")}


CIRCUIT_STAGES: tuple[CircuitStage, ...] = (
    CircuitStage("baseline", cs.baseline, (), lambda c: [c.chat, c.baseline.model_dump(mode="json"), c.ablation.max_new_tokens,
                                                         c.ablation.refusal_phrases]),
    CircuitStage("pairs", cs.pairs, (), lambda c: [c.chat]),
    CircuitStage("patching", cs.patching, ("pairs",), lambda c: [c.chat, _no_batch(c.patching)]),
    CircuitStage("rank", cs.rank, ("patching",), lambda c: [c.seed, c.rank.model_dump(mode="json")]),
    CircuitStage("edges", cs.edges, ("pairs", "rank"), lambda c: [c.chat]),
    CircuitStage("ablation", cs.ablation, ("pairs", "rank"), lambda c: [c.chat, c.seed, _no_batch(c.ablation)]),
)


@dataclass
class CircuitRunResult:
    """What a run produced: ``results.json`` content, output paths, per-stage timings."""

    results: dict[str, Any]
    paths: dict[str, Path]
    seconds: float

    def summary(self) -> dict[str, Any]:
        """The ``alignscope run --json`` payload of this study."""
        r = self.results
        return {"study": "refusal_circuit", "baseline": r["baseline"]["by_label"],
                "top_components": [{k: row[k] for k in ("component", "layer", "head", "effect", "ci95", "causal_fraction")}
                                   for row in r["top_components"]],
                "ablation": [{k: row[k] for k in ("k", "refusal_rate", "ci95", "random_mean", "random_ci95", "p_value", "kl_harmless")}
                             for row in r["ablation"]["curve"]],
                "reference": r["ablation"]["reference"], "first_place_rate": r["first_place_rate"],
                "model": r["model"]["name"], "paths": {k: str(v) for k, v in self.paths.items()}, "seconds": round(self.seconds, 2)}


def _file_hash(spec: str | None) -> str | None:
    if spec is None:
        return None
    return sha256_file(builtin_pairs_path() if spec == BUILTIN else Path(spec))


def run_circuit_study(cfg: CircuitRunConfig, out_dir: str | Path, *, config_path: str | None = None,
                      progress: bool = True) -> CircuitRunResult:
    """Run (or resume) the refusal-circuit study into ``out_dir``."""
    start = time.perf_counter()
    out = Path(out_dir)
    store = StageStore(out)
    ctx = cs.make_context(cfg, out, progress)
    cs.check_plan(ctx)
    source = resolve_source(cfg.model)[1]
    weights = weights_hash(source, store.dir / "model_hash.json")
    if weights["sha256"] is None:
        weights = {"sha256": model_identity(ctx.lm).weights_sha256, "files": {}}
    dtype = dtype_name(resolve_dtype(cfg.dtype, resolve_device(cfg.device)))
    base = {"model": resume_key(weights["sha256"], dtype), "intervention": _file_hash(cfg.intervention), "pairs": _file_hash(cfg.pairs)}
    records: dict[str, StageRecord] = {}
    timings: dict[str, dict[str, Any]] = {}
    for spec in CIRCUIT_STAGES:
        fp = fingerprint(f"circuit.{spec.name}", base, spec.reads(cfg), [records[d].content for d in spec.deps])
        name = f"circuit_{spec.name}"
        record = store.load(name, fp)
        if record is None:
            log.info("stage %s: running", spec.name)
            t0 = time.perf_counter()
            ctx.seed_everything()
            produced = spec.fn(ctx, {d: records[d] for d in spec.deps})
            record = store.save(name, fp, produced.output, produced.tensors, seconds=time.perf_counter() - t0, files=produced.files,
                                provenance=produced.provenance)
        else:
            log.info("stage %s: reused from %s", spec.name, store.json_path(name))
        records[spec.name] = record
        timings[spec.name] = {"seconds": round(record.seconds, 3), "reused": record.reused}
    t0 = time.perf_counter()
    results = assemble(ctx, records, weights, timings)
    paths = write_circuit_report(results, {k: v.tensors for k, v in records.items()}, out)
    timings["report"] = {"seconds": round(time.perf_counter() - t0, 3), "reused": False}
    seconds = time.perf_counter() - start
    paths["manifest.json"] = write_manifest(out / "manifest.json", config=cfg.to_dict(), seed=cfg.seed,
                                            model={"name": results["model"]["name"], "source": source, **weights},
                                            stages=timings, seconds=seconds, config_path=config_path)
    return CircuitRunResult(results, paths, seconds)


def assemble(ctx: cs.CircuitContext, records: dict[str, StageRecord], weights: dict[str, Any],
             timings: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``results.json``: every stage's summary in one JSON object."""
    lm = ctx.lm
    pairs = records["pairs"].output
    patch = records["patching"].output
    return {
        "format": "alignscope.refusal-circuit/1",
        "model": {"name": resolve_source(ctx.cfg.model)[0], "n_layers": lm.n_layers, "n_heads": lm.n_heads,
                  "weights_sha256": weights.get("sha256")},
        "intervention": ctx.cfg.intervention,
        "config": ctx.cfg.to_dict(),
        "baseline": {k: records["baseline"].output[k] for k in ("by_label", "by_category")},
        "pairs": {"n": len(pairs["pairs"]), "n_categories": pairs["n_categories"],
                  "n_rank": sum(1 for p in pairs["pairs"] if p["split"] == "rank"),
                  "n_heldout": sum(1 for p in pairs["pairs"] if p["split"] == "heldout"),
                  "n_same_length": sum(1 for p in pairs["pairs"] if p["same_length"]), "note": pairs["note"]},
        "patching": {"components": patch["components"], "pairs": patch["pairs"], "directions": sorted(patch["metrics"]),
                     "metrics": patch["metrics"], "method": patch["method"], "seconds": patch["seconds_patching"],
                     "metric": "refusal log-odds of the next token (refusal-starting tokens)"},
        "top_components": records["rank"].output["top"],
        "ranked": records["rank"].output["ranked"],
        "layer_importance": records["rank"].output["layer_importance"],
        "first_place_rate": records["rank"].output["first_place_rate"],
        "rank_direction": records["rank"].output["direction"],
        "ablation": {k: records["ablation"].output[k] for k in ("reference", "curve", "method", "n_random", "prompts",
                                                               "baseline_generations", "examples")},
        "edges": records["edges"].output,
        "stages": timings,
    }
