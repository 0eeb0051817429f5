"""The refusal-circuit study end to end on a tiny model (CLI, JSON line, files, resume) and its bad-input errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from alignscope.cli import app
from alignscope.errors import InputError
from alignscope.models.loader import LoadedModel
from alignscope.pipeline.circuit_config import parse_circuit_config, study_of
from alignscope.steering.intervention_io import save_intervention
from alignscope.steering.planted import plant_refusal
from tests.circuits.conftest import strong_dir, strong_lm  # noqa: F401  (fixtures)
from tests.circuits.test_refusal_circuit import HARMFUL, HARMLESS

runner = CliRunner()


@pytest.fixture
def study_config(strong_lm: Callable[[str], LoadedModel], strong_dir: Callable[[str], Path],  # noqa: F811
                 tmp_path: Path) -> Callable[..., Path]:
    lm = strong_lm("llama")
    iv = plant_refusal(lm, HARMFUL, HARMLESS, layer=lm.n_layers - 1, vector="unembed", coefficient=60.0)
    save_intervention(tmp_path / "planted.safetensors", iv, model=lm.name)
    rows = [{"harmful": b, "harmless": g, "category": f"c{i % 2}", "split": "rank" if i < 4 else "heldout"}
            for i, (b, g) in enumerate(zip(HARMFUL, HARMLESS, strict=True))]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    def make(**ablation: object) -> Path:
        cfg = {"study": "refusal_circuit", "model": str(strong_dir("llama")), "device": "cpu", "intervention": "planted.safetensors",
               "pairs": "pairs.jsonl", "baseline": {"n": 2}, "rank": {"n_boot": 50, "top": 4},
               "ablation": {"ks": [1, 3], "n_random": 2, "max_new_tokens": 2, **ablation}}
        path = tmp_path / "study.yaml"
        path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        return path

    return make


def test_study_cli_json_files_and_resume(study_config: Callable[..., Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, ["run", str(study_config()), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(summary["baseline"]) == {"harmful", "harmless"}
    assert {"n", "refusal_rate", "ci95"} <= set(summary["baseline"]["harmful"])
    top = summary["top_components"]
    assert len(top) == 4 and set(top[0]) == {"component", "layer", "head", "effect", "ci95", "causal_fraction"}
    assert top[0]["component"] == "mlp_out@L1"  # the planted site
    assert [r["k"] for r in summary["ablation"]] == [1, 3]
    assert set(summary["ablation"][0]) == {"k", "refusal_rate", "ci95", "random_mean", "random_ci95", "p_value", "kl_harmless"}
    assert summary["model"] and summary["seconds"] >= 0
    for name in ("results.json", "report.html", "top_components.csv", "ablation.csv", "ablation_curve.png",
                 "patching_denoise_heads.png", "patching_noise_layers.png", "layer_importance.png", "manifest.json"):
        assert (out / name).is_file(), name
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "post-instruction positions" in html and "<script>" in html
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["pairs"]["n_rank"] == 4 and results["pairs"]["n_heldout"] == 1
    again = runner.invoke(app, ["run", str(study_config()), "--out", str(out), "--json"])
    assert again.exit_code == 0, again.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert all(v["reused"] for k, v in manifest["stages"].items() if k != "report")


def test_direction_ablation_runs_through_the_study(study_config: Callable[..., Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, ["run", str(study_config(method="direction")), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert [r["k"] for r in summary["ablation"]] == [1, 3]
    assert json.loads((out / "results.json").read_text(encoding="utf-8"))["ablation"]["method"] == "direction"


def test_k_larger_than_components_names_the_field(study_config: Callable[..., Path], tmp_path: Path) -> None:
    res = runner.invoke(app, ["run", str(study_config(components=["mlp_out@L1", "attn_out@L0"], ks=[1, 5])),
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "ablation.ks" in res.output and "k=5" in res.output


def test_unknown_component_names_the_field(study_config: Callable[..., Path], tmp_path: Path) -> None:
    res = runner.invoke(app, ["run", str(study_config(components=["mlp_out@L7"])), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "ablation.components[0]" in res.output and "layer 7 does not exist" in res.output


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="patching.kindz"):
        parse_circuit_config({"patching": {"kindz": []}}, "c.yaml")
    with pytest.raises(InputError, match="ablation.ks"):
        parse_circuit_config({"ablation": {"ks": [0, 5]}}, "c.yaml")
    with pytest.raises(InputError, match="rank.kinds"):
        parse_circuit_config({"rank": {"kinds": ["resid_pre"]}}, "c.yaml")
    assert parse_circuit_config({"ablation": {"ks": [20, 1, 5, 5]}}).ablation.ks == [1, 5, 20]


def test_study_selection() -> None:
    assert study_of(None, "x", None) == "refusal"
    assert study_of({"study": "refusal_circuit"}, "x", None) == "refusal_circuit"
    assert study_of(None, "x", "refusal_circuit") == "refusal_circuit"
    with pytest.raises(InputError, match="--study"):
        study_of({"study": "refusal"}, "x", "refusal_circuit")
    with pytest.raises(InputError, match="unknown study"):
        study_of({"study": "honesty"}, "x", None)


def test_refusal_study_accepts_explicit_study_key(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text("study: refusal\nintervene:\n  kind: sorcery\n", encoding="utf-8")
    res = runner.invoke(app, ["run", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "intervene.kind" in res.output


def test_shipped_examples_parse_and_resolve_paths() -> None:
    from alignscope.pipeline.config import read_yaml

    root = Path(__file__).resolve().parents[2] / "examples"
    cpu = parse_circuit_config(read_yaml(root / "refusal_circuit.yaml"), "x", root)
    assert cpu.intervention == str(root / "refusal_circuit_planted.safetensors") and cpu.model == "default"
    gpu = parse_circuit_config(read_yaml(root / "refusal_circuit_gpu.yaml"), "x", root)
    assert gpu.model == "meta-llama/Llama-3.1-8B-Instruct" and gpu.intervention is None
    lora = parse_circuit_config(read_yaml(root / "refusal_circuit_lora.yaml"), "x", root)
    assert lora.model == "runs/mac/lora_only_merged" and lora.ablation.method == "direction"


def test_shipped_mac_lora_example_parses() -> None:
    from alignscope.pipeline.mac_config import load_mac_config

    cfg = load_mac_config(Path(__file__).resolve().parents[2] / "examples" / "mac_lora.yaml")
    assert list(cfg.variants) == ["lora"] and cfg.lora is not None and cfg.lora.r == 8
    assert cfg.train.keep_loss == "ce"  # reproduces the model the README's LoRA circuit study measured
