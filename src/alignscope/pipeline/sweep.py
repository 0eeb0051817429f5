"""Sweeps over models x metrics: one (model, metric) unit at a time, checkpointed, resumable.

Each unit writes ``OUT/models/KEY/METRIC/result.json`` atomically (after its other files) with
the unit's fingerprint: the hash of the metric's settings and the identity of the models it reads
(:meth:`~alignscope.pipeline.model_catalog.Catalog.identity`). On a rerun, by mode:

* ``resume`` (default): a unit whose stored fingerprint matches is reused; a different one is redone
  (:func:`alignscope.resume.same_run` with ``redo``);
* ``skip-done``: any unit with a ``result.json`` is reused, whatever its fingerprint;
* ``fresh``: the stored units and the hidden-state cache (``OUT/cache``) are deleted first.

A sweep killed at any point (``kill -9`` included) loses no finished unit. Executors decide how
the units that are left run: :func:`local_executor` runs them in this process, one model loaded
at a time; :mod:`alignscope.pipeline.ray_executor` runs each as a Ray task. Both call
:func:`run_unit`, so they write the same files.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from alignscope.io import atomic_write_json, sha256_json
from alignscope.pipeline.model_catalog import Catalog
from alignscope.pipeline.sweep_metrics import METRICS, ModelPool, SweepSettings, UnitContext
from alignscope.resume import same_run

log = logging.getLogger(__name__)

Mode = Literal["resume", "fresh", "skip-done"]
MODES: tuple[str, ...] = ("resume", "fresh", "skip-done")
RESULT_FILE = "result.json"


@dataclass(frozen=True)
class Unit:
    """One (model, metric) unit of a sweep."""

    key: str
    metric: str


@dataclass(frozen=True)
class SweepJob:
    """Everything a unit needs, picklable (a Ray task gets it whole)."""

    catalog: Catalog
    settings: SweepSettings
    out: Path

    def unit_dir(self, unit: Unit) -> Path:
        """``OUT/models/KEY/METRIC``."""
        return self.out / "models" / unit.key / unit.metric

    @property
    def cache_dir(self) -> Path:
        """``OUT/cache``: the hidden states every unit shares."""
        return self.out / "cache"

    def fingerprint(self, unit: Unit) -> str:
        """The hash of what the unit's result depends on (see the module docstring)."""
        metric = METRICS[unit.metric]
        entry = self.catalog[unit.key]
        inputs: dict[str, Any] = {"metric": unit.metric, "settings": metric.settings(self.settings),
                                  "model": self.catalog.identity(unit.key)}
        if metric.partner and entry.partner is not None:
            inputs["partner"] = self.catalog.identity(entry.partner)
        return sha256_json(inputs)


Executor = Callable[[SweepJob, Sequence[Unit]], None]


@dataclass
class SweepResult:
    """What a sweep produced: the records of every planned unit, the entries skipped and why, and timing."""

    models: list[str]
    metrics: list[str]
    records: dict[str, dict[str, dict[str, Any]]]
    skipped: dict[str, str]
    reused: list[Unit]
    computed: list[Unit]
    seconds: float
    executor: str
    out: Path
    files: list[str] = field(default_factory=list)

    def results(self) -> dict[str, dict[str, Any]]:
        """``{model: {metric: summary}}``."""
        return {key: {m: rec["result"] for m, rec in by_metric.items()} for key, by_metric in self.records.items()}

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object: ``{models, metrics, results, seconds, executor}``."""
        return {"models": self.models, "metrics": self.metrics, "results": self.results(), "seconds": round(self.seconds, 3),
                "executor": self.executor}


def plan_units(catalog: Catalog, metrics: Sequence[str]) -> tuple[list[Unit], dict[str, str]]:
    """The units to run, model by model in file order, and the entries that cannot run here (with the reason)."""
    skipped: dict[str, str] = {}
    units: list[Unit] = []
    for key, entry in catalog.entries.items():
        reason = catalog.missing(key) or (catalog.missing(entry.partner) if entry.partner else None)
        if reason is not None:
            skipped[key] = reason
            continue
        units.extend(Unit(key, m) for m in metrics if METRICS[m].applies(entry))
    return units, skipped


def read_record(path: Path) -> dict[str, Any] | None:
    """A unit's ``result.json`` (None when absent or unreadable: a unit is finished only once it is complete)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "result" in data else None


def is_done(job: SweepJob, unit: Unit, mode: Mode) -> bool:
    """Whether the unit's stored result can be reused under ``mode``."""
    if mode == "fresh":
        return False
    record = read_record(job.unit_dir(unit) / RESULT_FILE)
    if record is None:
        return False
    if mode == "skip-done":
        return True
    return same_run(record.get("fingerprint"), job.fingerprint(unit), where=job.unit_dir(unit), what=f"a {unit.metric} result",
                    inputs="model weights, intervention or metric settings", on_mismatch="redo")


def run_unit(job: SweepJob, unit: Unit, pool: ModelPool) -> dict[str, Any]:
    """Run one unit and write its files, ``result.json`` last (atomically); returns the record."""
    start = time.perf_counter()
    out_dir = job.unit_dir(unit)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = UnitContext(unit.key, job.catalog, job.settings, out_dir, job.cache_dir, pool)
    result = METRICS[unit.metric].run(ctx)
    record = {"model": unit.key, "metric": unit.metric, "fingerprint": job.fingerprint(unit), "model_info": ctx.info,
              "seconds": round(time.perf_counter() - start, 3), "result": result}
    atomic_write_json(out_dir / RESULT_FILE, record)
    log.info("%s / %s done in %.1fs", unit.key, unit.metric, record["seconds"])
    return record


def local_executor(job: SweepJob, units: Sequence[Unit]) -> None:
    """Run ``units`` here, in order, keeping one model loaded at a time (freed when the next one loads, and at the end)."""
    pool = ModelPool(job.catalog)
    try:
        for unit in units:
            run_unit(job, unit, pool)
    finally:
        pool.release()


def run_sweep(catalog: Catalog, metrics: Sequence[str], out: str | Path, *, settings: SweepSettings | None = None,
              mode: Mode = "resume", executor: Executor = local_executor, executor_name: str = "local") -> SweepResult:
    """Plan the units, reuse the finished ones (by ``mode``), run the rest with ``executor`` and collect every record."""
    start = time.perf_counter()
    job = SweepJob(catalog, settings or SweepSettings(), Path(out))
    if mode == "fresh":
        for sub in ("models", "cache"):
            shutil.rmtree(job.out / sub, ignore_errors=True)
    units, skipped = plan_units(catalog, metrics)
    for key in dict.fromkeys(k for u in units for k in (u.key, catalog[u.key].partner) if k is not None):
        catalog.prepare(key)  # here, once, before any executor's tasks run in parallel
    reused = [u for u in units if is_done(job, u, mode)]
    todo = [u for u in units if u not in reused]
    log.info("%d units: %d reused, %d to run (%s executor)", len(units), len(reused), len(todo), executor_name)
    if todo:
        executor(job, todo)
    records: dict[str, dict[str, dict[str, Any]]] = {}
    for unit in units:
        record = read_record(job.unit_dir(unit) / RESULT_FILE)
        if record is None:
            raise RuntimeError(f"unit {unit.key}/{unit.metric} finished without {RESULT_FILE}")
        records.setdefault(unit.key, {})[unit.metric] = record
    models = list(dict.fromkeys(u.key for u in units))
    return SweepResult(models, list(metrics), records, skipped, reused, todo, time.perf_counter() - start, executor_name, job.out)
