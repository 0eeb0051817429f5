"""Sweeps: units, checkpoints, resume modes, a kill -9 that loses no finished unit, and bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from alignscope.cli import app
from alignscope.data.text_groups import load_text_groups
from alignscope.errors import InputError
from alignscope.models.loader import load_model
from alignscope.pipeline.model_catalog import load_catalog
from alignscope.pipeline.sweep import RESULT_FILE, run_sweep
from alignscope.pipeline.sweep_metrics import ModelPool, parse_metrics
from alignscope.steering.deltas import model_deltas
from alignscope.steering.intervention_io import load_intervention
from tests.pipeline.sweep_registry import SETTINGS, write_registry

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ALIGNSCOPE_CACHE", str(tmp_path / "cache"))
    return write_registry(tmp_path / "reg")


def test_sweep_equals_direct_deltas_and_resumes(registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cat = load_catalog(registry)
    out = tmp_path / "sweep"
    res = run_sweep(cat, ["deltas"], out, settings=SETTINGS)
    assert res.models == ["t1", "steered"] and [u.key for u in res.computed] == ["t1", "steered"] and not res.reused
    groups = load_text_groups(SETTINGS.deltas_data, limit=SETTINGS.limit)
    base = load_model(cat.source("t0"), device="cpu")
    direct = model_deltas(base, load_model(cat.source("t1"), device="cpu"), groups.chosen, groups.rejected)
    got = res.results()["t1"]["deltas"]
    assert [row["delta_norm_chosen"] for row in got["per_layer"]] == pytest.approx(direct.norms()["delta_chosen"].tolist(), abs=1e-5)
    steered = res.results()["steered"]["deltas"]
    iv = load_intervention(registry.parent / "add.safetensors")
    direct_s = model_deltas(base, base, groups.chosen, groups.rejected, instruct_intervention=iv)
    assert [row["cosine_rejected"] for row in steered["per_layer"]] == pytest.approx(direct_s.cosine_rejected.tolist(), abs=1e-5)
    assert steered["per_layer"][0]["delta_norm_chosen"] == 0.0 and steered["peak_layer"] == 1
    record = json.loads((out / "models" / "t1" / "deltas" / RESULT_FILE).read_text())
    assert record["model_info"]["n_layers"] == 2 and (out / "models" / "t1" / "deltas" / "deltas.safetensors").is_file()

    loads = []
    monkeypatch.setattr(ModelPool, "get", lambda self, key: loads.append(key))
    again = run_sweep(cat, ["deltas"], out, settings=SETTINGS)
    assert loads == [] and not again.computed and again.results() == res.results()
    monkeypatch.undo()
    monkeypatch.setenv("ALIGNSCOPE_CACHE", str(tmp_path / "cache"))
    changed = SETTINGS.__class__(**{**SETTINGS.__dict__, "svd_k": 1})
    skip = run_sweep(cat, ["deltas"], out, settings=changed, mode="skip-done")
    assert not skip.computed and skip.results()["t1"]["deltas"]["svd_k"] == 0
    redo = run_sweep(cat, ["deltas"], out, settings=changed)
    assert len(redo.computed) == 2 and redo.results()["t1"]["deltas"]["svd_k"] == 1
    fresh = run_sweep(cat, ["deltas"], out, settings=changed, mode="fresh")
    assert len(fresh.computed) == 2 and fresh.results() == redo.results()


def test_a_pair_whose_tokenizers_differ_names_both(tmp_path: Path, tiny_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from transformers import AutoTokenizer

    monkeypatch.setenv("ALIGNSCOPE_CACHE", str(tmp_path / "cache"))
    odd = tmp_path / "odd"
    shutil.copytree(tiny_dir("llama"), odd)
    tok = AutoTokenizer.from_pretrained(str(odd))
    tok.add_tokens(["<extra>"])
    tok.save_pretrained(str(odd))
    reg = tmp_path / "models.yaml"
    reg.write_text(f"models:\n  base:\n    tiny: llama\n    device: cpu\n  odd:\n    path: {odd}\n    device: cpu\n    partner: base\n")
    with pytest.raises(InputError, match=r"base \(base\) and odd \(odd\) do not share a tokenizer vocabulary"):
        run_sweep(load_catalog(reg), ["deltas"], tmp_path / "out", settings=SETTINGS)


def test_unknown_metric_lists_the_valid_ones() -> None:
    assert parse_metrics(" deltas, deltas ") == ("deltas",)
    with pytest.raises(InputError, match="unknown metric 'aqx'; valid metrics: aqi, deltas"):
        parse_metrics("deltas,aqx")
    with pytest.raises(InputError, match="no metric named"):
        parse_metrics(" , ")


def test_kill_9_loses_no_finished_unit(tmp_path: Path) -> None:
    env = {**os.environ, "ALIGNSCOPE_CACHE": str(tmp_path / "cache"), "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    reg = write_registry(tmp_path / "reg")
    # more pairs, so the sweep is still running when the first unit finishes
    reg.write_text(reg.read_text() + "".join(f"  s{i}:\n    tiny: llama\n    seed: {i}\n    device: cpu\n    partner: t0\n" for i in range(2, 8)))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "alignscope", "compare", str(reg), "--out", str(out), "--metrics", "deltas", "--limit", "16", "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "models" / "t1" / "deltas" / RESULT_FILE
    deadline = time.monotonic() + 240
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p: (p.stat().st_mtime_ns, p.read_text()) for p in out.glob(f"models/*/deltas/{RESULT_FILE}")}
    assert first in finished and all(json.loads(text)["result"] for _, text in finished.values())  # whole files only
    assert len(finished) < 8  # the kill landed mid-sweep
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    payload = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert sorted(payload["results"]) == sorted(["t1", "steered", *(f"s{i}" for i in range(2, 8))])
    for path, (mtime, text) in finished.items():  # every unit finished before the kill was reused, not redone
        assert path.stat().st_mtime_ns == mtime and path.read_text() == text
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["reused"]) == len(finished) and len(summary["computed"]) == 8 - len(finished)
    torch.testing.assert_close(torch.tensor(payload["results"]["t1"]["deltas"]["per_layer"][1]["cosine_chosen"]),
                               torch.tensor(json.loads(first.read_text())["result"]["per_layer"][1]["cosine_chosen"]))


def test_aqi_metric_equals_the_aqi_command(registry: Path, tmp_path: Path) -> None:
    cat = load_catalog(registry)
    settings = SETTINGS.__class__(**{**SETTINGS.__dict__, "aqi_bootstrap": 20})
    res = run_sweep(cat, ["aqi"], tmp_path / "sweep", settings=settings)
    assert res.models == ["t0", "t1", "steered"] and len(res.computed) == 3
    cli = CliRunner().invoke(app, ["aqi", "--model", cat.source("t0"), "--data", "builtin:axioms:test", "--bootstrap", "20",
                                   "--batch-size", "4", "--device", "cpu", "--out", str(tmp_path / "aqi"), "--json"])
    assert cli.exit_code == 0, cli.output
    direct = json.loads(cli.stdout.strip().splitlines()[-1])
    got = res.results()["t0"]["aqi"]
    for key in ("aqi", "aqi_relative", "chi", "xb", "davies_bouldin", "dunn", "ci95", "n", "layer", "per_layer", "per_axiom"):
        assert got[key] == direct[key], key  # the same computation: equal, not close
    steered = res.results()["steered"]["aqi"]
    assert steered["chi"] != pytest.approx(got["chi"], abs=1e-6)  # the entry's intervention is active while it is measured
    assert (tmp_path / "sweep" / "models" / "t0" / "aqi" / "aqi_layers.png").is_file()


def test_aqi_metric_reads_raw_text_where_a_model_has_no_chat_template(tmp_path: Path, tiny_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGNSCOPE_CACHE", str(tmp_path / "cache"))
    base = tmp_path / "base_model"
    shutil.copytree(tiny_dir("llama"), base)
    (base / "chat_template.jinja").unlink()  # a base model: no chat template
    reg = tmp_path / "models.yaml"
    reg.write_text(f"models:\n  base:\n    path: {base}\n    device: cpu\n  chat:\n    tiny: llama\n    device: cpu\n", encoding="utf-8")
    settings = SETTINGS.__class__(**{**SETTINGS.__dict__, "aqi_bootstrap": 5})
    res = run_sweep(load_catalog(reg), ["aqi"], tmp_path / "sweep", settings=settings)
    got = res.results()
    assert got["base"]["aqi"]["settings"]["chat"] is False and got["chat"]["aqi"]["settings"]["chat"] is True
