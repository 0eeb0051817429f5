"""`alignscope deltas` and `alignscope compare`: the --json contracts, the files, and bad input (one error line, exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from alignscope.cli import app
from alignscope.steering.direction_io import load_direction
from alignscope.steering.intervention_io import save_intervention
from alignscope.steering.interventions import ActivationAddition
from tests.pipeline.sweep_registry import write_registry

runner = CliRunner()
PER_LAYER_KEYS = {"layer", "cosine_chosen", "cosine_rejected", "delta_norm_chosen", "delta_norm_rejected", "explained_variance_k"}


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def test_deltas_with_an_intervention_partner(tmp_path: Path, tiny_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    iv = save_intervention(tmp_path / "iv.safetensors", ActivationAddition(torch.ones(32), (1,), 2.0), model="tiny")
    out = tmp_path / "d"
    args = ["deltas", "--base", str(tiny_dir("llama")), "--aligned-intervention", str(iv), "--data", "builtin:harm:test",
            "--limit", "3", "--svd-k", "1", "--out", str(out), "--device", "cpu", "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    payload = last_json(res.output)
    assert {"base", "aligned", "aligned_intervention", "data", "per_layer", "peak_layer", "seconds", "svd_k"} <= set(payload)
    assert payload["data"]["n_chosen"] == 3 and payload["svd_k"] == 1 and payload["peak_layer"] == 1
    assert [set(row) for row in payload["per_layer"]] == [PER_LAYER_KEYS] * 2
    assert payload["per_layer"][0]["delta_norm_chosen"] == 0.0 and payload["per_layer"][1]["delta_norm_chosen"] > 0
    for name in ("deltas.safetensors", "deltas.json", "cosine.png", "delta_norm.png", "explained_variance.png"):
        assert (out / name).is_file(), name
    assert load_direction(out / "deltas.safetensors").layer == 1
    assert json.loads((out / "deltas.json").read_text())["per_layer"] == payload["per_layer"]

    import alignscope.activations.prompt_means as pm

    monkeypatch.setattr(pm, "capture_batch", lambda *a, **k: (_ for _ in ()).throw(AssertionError("forward pass")))
    again = runner.invoke(app, args)  # the hidden states come from out/cache
    assert again.exit_code == 0, again.output
    assert last_json(again.output)["per_layer"] == payload["per_layer"]


@pytest.mark.parametrize(("args", "message"), [
    (["deltas", "--base", "x", "--data", "builtin:harm", "--out", "o"], "the aligned model is the base model"),
    (["deltas", "--base", "x", "--aligned", "y", "--data", "builtin:nope", "--out", "o"], "unknown built-in group set 'nope'"),
    (["compare", "REG", "--out", "o", "--metrics", "deltas,aqz"], "unknown metric 'aqz'; valid metrics: aqi, deltas"),
    (["compare", "REG", "--out", "o", "--fresh", "--skip-done"], "at most one of --resume, --fresh and --skip-done"),
    (["compare", "REG", "--out", "o", "--executor", "dask"], "unknown executor 'dask'"),
])
def test_bad_input_is_one_error_line(tmp_path: Path, args: list[str], message: str) -> None:
    reg = write_registry(tmp_path / "reg")
    res = runner.invoke(app, [str(reg) if a == "REG" else a for a in args])
    assert res.exit_code == 2 and message in res.output and res.output.count("error:") == 1, res.output


def test_registry_with_an_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    reg = tmp_path / "models.yaml"
    reg.write_text("models:\n  a:\n    id: x\n    quantise: 4\n")
    res = runner.invoke(app, ["compare", str(reg), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and str(reg) in res.output and "models.a.quantise" in res.output and "unknown key" in res.output


def test_compare_json_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGNSCOPE_CACHE", str(tmp_path / "cache"))
    reg = write_registry(tmp_path / "reg")
    out = tmp_path / "sweep"
    res = runner.invoke(app, ["compare", str(reg), "--out", str(out), "--limit", "3", "--aqi-bootstrap", "10", "--json"])
    assert res.exit_code == 0, res.output
    payload = last_json(res.output)
    assert set(payload) == {"models", "metrics", "results", "seconds", "executor"}
    assert payload["models"] == ["t0", "t1", "steered"] and payload["metrics"] == ["aqi", "deltas"] and payload["executor"] == "local"
    assert payload["results"]["steered"]["deltas"]["peak_layer"] == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["results"] == payload["results"] and summary["computed"] == ["t0/aqi", "t1/aqi", "t1/deltas", "steered/aqi", "steered/deltas"]
    for name in ("report.html", "model_dims.png", "aqi_bars.png", "aqi_heatmap.png", "models/t0/aqi/result.json",
                 "deltas_cosine.png", "deltas_delta_norm.png", "deltas_explained_variance.png",
                 "models/t1/result.json", "models/t1/deltas/result.json", "models/steered/deltas/deltas.safetensors"):
        assert (out / name).is_file(), name
    assert json.loads((out / "models" / "t1" / "result.json").read_text())["metrics"]["deltas"]["result"] == payload["results"]["t1"]["deltas"]
    again = runner.invoke(app, ["compare", str(reg), "--out", str(out), "--limit", "3", "--aqi-bootstrap", "10"])
    assert again.exit_code == 0 and "0 units run, 5 reused" in again.output
