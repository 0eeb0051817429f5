"""Run the refusal study stage by stage, resuming from checkpoints.

Stages, in order (each reads the outputs of the ones it depends on):

==========  ==========================================================  ================
stage       does                                                        depends on
==========  ==========================================================  ================
baseline    refusal on the test split without intervention              --
extract     difference-in-means candidates on the train split           --
select      filter and score candidates on the val split                extract
intervene   search the saved intervention on the val split              extract, select
evaluate    refusal + first-token KL on the test split, intervened      all above
report      ``results.json``, PNG plots, ``report.html``, manifest      all
==========  ==========================================================  ================

A stage is skipped when its checkpoint carries the same fingerprint (config fields it reads,
the model's :func:`~alignscope.models.identity.resume_key` (weights hash and dtype, not its
name: a renamed copy of the same weights resumes), prompts, content of the upstream records);
see :mod:`alignscope.pipeline.store`.

``results.json`` is :meth:`alignscope.evals.study.StudyResults.to_json`; its schema (what the
report reads) is documented on :class:`~alignscope.evals.study.StudyResults` and its parts, and
:meth:`~alignscope.evals.study.StudyResults.read` loads a finished run's file back.

Example:
    >>> result = run_pipeline(load_config("run.yaml"), "out/run")   # doctest: +SKIP
    >>> result.summary()["after"]["refusal_rate"]                    # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from alignscope.errors import in_stage
from alignscope.evals.study import StageTiming, StudyResults
from alignscope.models.identity import dtype_name, model_identity, resume_key, weights_hash
from alignscope.models.loader import resolve_device, resolve_dtype
from alignscope.pipeline import stages
from alignscope.pipeline.config import RunConfig
from alignscope.pipeline.context import Context, StageOutput
from alignscope.pipeline.data import resolve_data
from alignscope.pipeline.manifest import write_manifest
from alignscope.pipeline.store import StageRecord, StageStore, fingerprint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageSpec:
    """One stage: its name (also its function in :mod:`alignscope.pipeline.stages`), upstream stages, the config it reads."""

    name: str
    deps: tuple[str, ...]
    reads: Callable[[RunConfig], Any]

    def compute(self, ctx: Context, deps: dict[str, StageRecord]) -> StageOutput:
        """Run the stage function (looked up by name at call time)."""
        fn: Callable[[Context, dict[str, StageRecord]], StageOutput] = getattr(stages, self.name)
        return fn(ctx, deps)


def _no_batch(section: Any) -> dict[str, Any]:
    """A config section without batch sizes (they change speed, not results)."""
    return {k: v for k, v in section.model_dump(mode="json").items() if k != "batch_size"}


def _eval_reads(cfg: RunConfig) -> Any:
    ev = _no_batch(cfg.evaluate)
    ev.pop("judge", None)
    judge = {} if cfg.evaluate.judge is None else cfg.evaluate.judge.library_kwargs()
    ev["judge"] = {k: judge[k] for k in ("base_url", "model")} if judge else None
    return [cfg.chat, ev]


STAGES: tuple[StageSpec, ...] = (
    StageSpec("baseline", (), _eval_reads),
    StageSpec("extract", (), lambda c: [c.chat, c.seed, _no_batch(c.extract)]),
    StageSpec("select", ("extract",), lambda c: [c.chat, _no_batch(c.select)]),
    StageSpec("intervene", ("extract", "select"), lambda c: [c.chat, c.seed, _no_batch(c.intervene)]),
    StageSpec("evaluate", ("baseline", "extract", "select", "intervene"), _eval_reads),
)
STAGE_NAMES: tuple[str, ...] = (*(s.name for s in STAGES), "report")


@dataclass
class RunResult:
    """What a run produced: the typed results (``results.json``), output paths, per-stage timings and reuse."""

    results: StudyResults
    paths: dict[str, Path]
    timings: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """The compact ``alignscope run --json`` payload."""
        r = self.results
        pick = ("n", "refusal_rate", "ci95")
        lookalike = {when: None if (g := ev.by_category.get("lookalike")) is None else g.to_json()
                     for when, ev in (("before", r.baseline), ("after", r.after))}
        return {
            "model": r.model.name,
            "split": "test",
            "before": {k: v for k, v in r.baseline.to_json().items() if k in pick},
            "after": {k: v for k, v in r.after.to_json().items() if k in pick},
            "lookalike": lookalike if any(lookalike.values()) else None,
            "kl": {"n": r.kl.n, "mean": r.kl.mean, "ci95": list(r.kl.ci95)},
            "gate": {name: g.gate.to_json() for name, g in r.gate.by_label.items()} if r.gate else None,
            "intervention": {"kind": r.intervention.kind, "description": r.intervention.description},
            "paths": {k: str(v) for k, v in self.paths.items()},
            "stages": {k: {"seconds": v["seconds"], "reused": v["reused"]} for k, v in self.timings.items()},
            "seconds": round(self.seconds, 2),
        }


def _weights(ctx: Context, store: StageStore) -> dict[str, Any]:
    """The weights hash of the configured model, from its files without loading it when it has any."""
    weights = weights_hash(ctx.source, store.dir / "model_hash.json")
    if weights["sha256"] is None:  # nothing on disk to hash (a hub id not in the cache): hash the loaded tensors
        weights = {"sha256": model_identity(ctx.lm).weights_sha256, "files": {}}
    return weights


def run_pipeline(cfg: RunConfig, out_dir: str | Path, *, config_path: str | None = None, progress: bool = True) -> RunResult:
    """Run (or resume) the study into ``out_dir``.

    Args:
        cfg: the validated config.
        out_dir: output directory; ``stages/`` inside it holds the checkpoints.
        config_path: where the config came from (recorded in the manifest).
        progress: progress bars on stderr.

    Returns:
        A :class:`RunResult`.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    store = StageStore(out)
    data = resolve_data(cfg.data.harmful, cfg.data.harmless, cfg.data.lookalike,
                        caps={"train": cfg.data.n_train, "val": cfg.data.n_val, "test": cfg.data.n_test}, seed=cfg.seed)
    ctx = Context(cfg, data, out, progress)
    weights = _weights(ctx, store)
    dtype = dtype_name(resolve_dtype(cfg.dtype, resolve_device(cfg.device)))
    base = {"model": resume_key(weights["sha256"], dtype), "data": data.summary()}
    records: dict[str, StageRecord] = {}
    timings: dict[str, dict[str, Any]] = {}
    for spec in STAGES:
        fp = fingerprint(spec.name, base, spec.reads(cfg), [records[d].content for d in spec.deps])
        record = store.load(spec.name, fp)
        if record is None:
            log.info("stage %s: running", spec.name)
            t0 = time.perf_counter()
            ctx.seed_everything()
            with in_stage(spec.name):
                produced = spec.compute(ctx, {d: records[d] for d in spec.deps})
            record = store.save(spec.name, fp, produced.output, produced.tensors, seconds=time.perf_counter() - t0,
                                files=produced.files, provenance=produced.provenance)
        else:
            log.info("stage %s: reused from %s", spec.name, store.json_path(spec.name))
        records[spec.name] = record
        timings[spec.name] = {"seconds": round(record.seconds, 3), "reused": record.reused}
    t0 = time.perf_counter()
    results = stages.assemble_results(ctx, records, weights, dict(timings), time.perf_counter() - start)
    paths = stages.write_outputs(ctx, records)
    paths.update(stages.write_report(ctx, results))
    timings["report"] = {"seconds": round(time.perf_counter() - t0, 3), "reused": False}
    results = replace(results, timings={name: StageTiming(t["seconds"], t["reused"]) for name, t in timings.items()},
                      seconds=time.perf_counter() - start)
    paths["results.json"] = stages.write_results(ctx, results)
    paths["manifest.json"] = write_manifest(out / "manifest.json", config=cfg.to_dict(), seed=cfg.seed,
                                            model={"name": results.model.name, "source": ctx.source, **weights},
                                            stages=timings, seconds=time.perf_counter() - start, config_path=config_path)
    return RunResult(results, paths, timings, time.perf_counter() - start)
