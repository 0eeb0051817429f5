"""The Ray executor: on a local 2-CPU cluster, a sweep writes the same checkpoints and results as the local executor."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from alignscope.pipeline.model_catalog import load_catalog  # noqa: E402
from alignscope.pipeline.ray_executor import ray_executor, unit_resources  # noqa: E402
from alignscope.pipeline.sweep import RESULT_FILE, SweepJob, Unit, run_sweep  # noqa: E402
from tests.pipeline.sweep_registry import SETTINGS, write_registry  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    cache = tmp_path_factory.mktemp("raycache")
    old = os.environ.get("ALIGNSCOPE_CACHE")
    os.environ["ALIGNSCOPE_CACHE"] = str(cache)
    pythonpath = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"ALIGNSCOPE_CACHE": str(cache), "PYTHONPATH": pythonpath}})
    yield cache
    ray.shutdown()
    if old is None:
        os.environ.pop("ALIGNSCOPE_CACHE", None)
    else:
        os.environ["ALIGNSCOPE_CACHE"] = old


def test_ray_sweep_equals_local_sweep(cluster: Path, tmp_path: Path) -> None:
    cat = load_catalog(write_registry(tmp_path / "reg"))
    local = run_sweep(cat, ["deltas"], tmp_path / "local", settings=SETTINGS)
    remote = run_sweep(cat, ["deltas"], tmp_path / "ray", settings=SETTINGS, executor=ray_executor(), executor_name="ray")
    assert remote.to_json()["executor"] == "ray" and len(remote.computed) == 2
    a, b = local.results(), remote.results()
    assert a.keys() == b.keys()
    for key in a:
        rows_a, rows_b = a[key]["deltas"].pop("per_layer"), b[key]["deltas"].pop("per_layer")
        assert a[key] == b[key]
        for ra, rb in zip(rows_a, rows_b, strict=True):
            assert ra == pytest.approx(rb, abs=1e-5)
    for unit in ("t1", "steered"):  # the same checkpoint files, with the same fingerprints
        fa = json.loads((tmp_path / "local" / "models" / unit / "deltas" / RESULT_FILE).read_text())
        fb = json.loads((tmp_path / "ray" / "models" / unit / "deltas" / RESULT_FILE).read_text())
        assert fa["fingerprint"] == fb["fingerprint"] and fa["model_info"] == fb["model_info"]
        assert sorted(p.name for p in (tmp_path / "ray" / "models" / unit / "deltas").iterdir()) == \
            sorted(p.name for p in (tmp_path / "local" / "models" / unit / "deltas").iterdir())
    again = run_sweep(cat, ["deltas"], tmp_path / "ray", settings=SETTINGS, executor=ray_executor(), executor_name="ray")
    assert not again.computed


def test_units_ask_for_a_gpu_when_their_entries_do(tmp_path: Path) -> None:
    reg = tmp_path / "models.yaml"
    reg.write_text("models:\n  b:\n    id: x\n    load_in_4bit: true\n  a:\n    id: y\n    partner: b\n  c:\n    id: z\n")
    job = SweepJob(load_catalog(reg), SETTINGS, tmp_path)
    assert unit_resources(job, Unit("a", "deltas"), 1.0) == {"num_cpus": 1.0, "num_gpus": 1.0}  # its base wants one
    assert unit_resources(job, Unit("c", "deltas"), 2.0) == {"num_cpus": 2.0, "num_gpus": 0.0}


def test_ray_aqi_equals_local_aqi(cluster: Path, tmp_path: Path) -> None:
    cat = load_catalog(write_registry(tmp_path / "reg"))
    settings = SETTINGS.__class__(**{**SETTINGS.__dict__, "aqi_bootstrap": 10})
    local = run_sweep(cat, ["aqi"], tmp_path / "local", settings=settings).results()
    remote = run_sweep(cat, ["aqi"], tmp_path / "ray", settings=settings, executor=ray_executor(), executor_name="ray").results()
    assert local.keys() == remote.keys() == {"t0", "t1", "steered"}
    for key in local:
        a, b = dict(local[key]["aqi"]), dict(remote[key]["aqi"])
        a.pop("seconds"), b.pop("seconds")  # wall time, not a result
        assert a == b, key
