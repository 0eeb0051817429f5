"""The Ray executor of a sweep: each (model, metric) unit is a Ray task with its CPU/GPU needs.

Ray is an optional extra (``pip install 'alignscope[ray]'``) and is imported only here. Every
task runs :func:`alignscope.pipeline.sweep.run_unit` on its own model pool, so it writes the
same checkpoint files as the local executor. A unit asks for one GPU when its entry (or, for a
base-vs-aligned metric, its partner) wants one (a cuda device, a device map or 4-bit loading),
else for ``num_cpus`` CPUs. ``ray.init()`` is called (with ``address``, when given) unless Ray
is already initialised, as in tests that start a local cluster with ``ray.init(num_cpus=2)``.

Example:
    >>> run_sweep(catalog, ["deltas"], "out", executor=ray_executor(), executor_name="ray")   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ray

from alignscope.pipeline.sweep import Executor, SweepJob, Unit, run_unit
from alignscope.pipeline.sweep_metrics import METRICS, ModelPool


def _run_one(job: SweepJob, unit: Unit) -> dict[str, Any]:
    pool = ModelPool(job.catalog)
    try:
        return run_unit(job, unit, pool)
    finally:
        pool.release()


def unit_resources(job: SweepJob, unit: Unit, num_cpus: float) -> dict[str, float]:
    """``{"num_cpus": ..., "num_gpus": ...}`` of one unit's task."""
    entry = job.catalog[unit.key]
    keys = [unit.key] + ([entry.partner] if METRICS[unit.metric].partner and entry.partner else [])
    gpu = any(job.catalog[k].wants_gpu for k in keys)
    return {"num_cpus": num_cpus, "num_gpus": 1.0 if gpu else 0.0}


def ray_executor(*, address: str | None = None, num_cpus: float = 1.0) -> Executor:
    """An executor that runs every unit as a Ray task and waits for them all."""

    def execute(job: SweepJob, units: Sequence[Unit]) -> None:
        if not ray.is_initialized():
            ray.init(address=address, log_to_driver=False)
        task = ray.remote(_run_one)
        refs = [task.options(**unit_resources(job, u, num_cpus)).remote(job, u) for u in units]  # type: ignore[attr-defined]
        ray.get(refs)

    return execute
