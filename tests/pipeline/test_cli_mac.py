"""``alignscope mac train`` / ``mac show`` end to end on a tiny model: files, the --json contract, resume, bad configs."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from alignscope.cli import app
from alignscope.data.builtin_sets import load_builtin
from alignscope.models.loader import load_model
from alignscope.pipeline.mac_config import PROBE_FREEZE, PROBE_MARGIN, PROBE_SCALE, parse_mac_config
from alignscope.pipeline.mac_run import circuit_start, starting_values
from alignscope.steering.circuit import load_circuit
from alignscope.steering.intervention_io import load_intervention
from tests.fake_openai import FakeOpenAI
from tests.reference import load_plain

runner = CliRunner()


@pytest.fixture(scope="module")
def mac_run(tiny_dir, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Path]:
    tmp = tmp_path_factory.mktemp("mac")
    cfg = {"model": str(tiny_dir("llama")), "device": "cpu",
           "data": {"max_examples_per_mix": 6, "distill_tokens": 3},
           "train": {"layer": 1, "epochs": 1, "batch_size": 4, "checkpoint_every": 2, "max_length": 48},
           "lora": {"r": 2},
           "compare": {"max_new_tokens": 3, "batch_size": 8, "limit": 4, "sensor_prompts": 1}}
    path = tmp / "mac.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    out = tmp / "out"
    res = runner.invoke(app, ["mac", "train", str(path), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    return out, json.loads(res.stdout.strip().splitlines()[-1]), path


def test_files_and_json_contract(mac_run) -> None:
    out, summary, _ = mac_run
    for name in ("mac.safetensors", "training.json", "comparison.json", "comparison.csv", "report.html", "loss.png",
                 "comparison.png", "sensors_0.png", "trajectories.png", "lora/adapter/adapter_model.safetensors",
                 "lora_only_merged/config.json", "module_lora/mac.safetensors"):
        assert (out / name).is_file(), name
    assert {"trainable_params", "trainable_pct", "train_seconds", "comparison"} <= set(summary)
    names = [r["name"] for r in summary["comparison"]]
    assert names == ["base", "addition", "module", "lora", "module_lora"]
    circuit = load_circuit(out / "mac.safetensors")
    n_circuit = sum(p.numel() for name, p in circuit.net.named_parameters() if name not in PROBE_FREEZE)
    assert summary["trainable_params"] == n_circuit == circuit.net.nudge.numel()  # by default only the nudges train
    base = load_model(str(mac_run[2].parent / "out" / "lora_only_merged"))
    total = sum(p.numel() for p in base.hf_model.parameters())
    assert summary["trainable_pct"] == pytest.approx(100 * n_circuit / total, rel=1e-9)
    for row in summary["comparison"]:
        for label in ("harmful", "harmless", "lookalike"):
            r = row["refusal"][label]
            assert r["n"] == 4 and 0 <= r["ci95"][0] <= r["ci95"][1] <= 1
        assert row["mc1"]["n"] == 4 and row["mc2"]["n"] == 4
    assert summary["comparison"][0]["kl"] is None  # the base is the reference
    assert all(r["kl"]["n"] == 4 and r["kl"]["mean"] >= 0 for r in summary["comparison"][1:])
    rows = list(csv.DictReader((out / "comparison.csv").open(encoding="utf-8")))
    assert [r["name"] for r in rows] == names
    assert isinstance(load_intervention(out / "mac.safetensors"), type(circuit))
    assert circuit.scope == "response" and load_circuit(out / "module_lora" / "mac.safetensors").scope == "response"


def test_lora_only_merged_is_a_plain_model_directory(mac_run, tiny_dir) -> None:
    out, _, _ = mac_run
    merged, base = load_plain(out / "lora_only_merged").state_dict(), load_plain(tiny_dir("llama")).state_dict()
    assert merged.keys() == base.keys()
    changed = [k for k, v in merged.items() if not torch.equal(v, base[k])]
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)


def test_rerun_reuses_every_stage(mac_run) -> None:
    out, summary, path = mac_run
    again = runner.invoke(app, ["mac", "train", str(path), "--out", str(out), "--json"])
    assert again.exit_code == 0, again.output
    second = json.loads(again.stdout.strip().splitlines()[-1])
    assert second["comparison"] == summary["comparison"]
    assert second["seconds"] < summary["seconds"]


def test_a_missing_trained_file_is_trained_again(mac_run, tmp_path: Path) -> None:
    out, summary, path = mac_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "mac.safetensors").unlink()
    (copy / "lora_only_merged" / "model.safetensors").unlink()
    again = runner.invoke(app, ["mac", "train", str(path), "--out", str(copy), "--json"])
    assert again.exit_code == 0, again.output
    def results(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in ("train_seconds", "throughput_ratio")} for r in rows]  # timings

    assert results(json.loads(again.stdout.strip().splitlines()[-1])["comparison"]) == results(summary["comparison"])
    assert (copy / "mac.safetensors").read_bytes() == (out / "mac.safetensors").read_bytes()  # retrained, bit for bit
    assert (copy / "lora_only_merged" / "model.safetensors").is_file()
    for name in ("eval_module", "eval_lora", "eval_module_lora"):  # trained again to the same weights (resumed, faster)
        assert (copy / "stages" / f"{name}.json").read_bytes() == (out / "stages" / f"{name}.json").read_bytes(), name
    manifest = {s: json.loads((copy / "stages" / f"{s}.json").read_text(encoding="utf-8")) for s in ("train_module", "train_lora")}
    assert set(manifest["train_module"]["files"]) == {"mac.safetensors"}
    assert set(manifest["train_lora"]["files"]) == {"lora/adapter/adapter_model.safetensors", "lora_only_merged/model.safetensors"}


def test_a_changed_circuit_start_retrains_only_what_reads_it(mac_run, tmp_path: Path) -> None:
    """A new gate margin changes the circuit's start: the circuit variants train again, while LoRA alone and the
    addition row (which never read the start) are reused, record for record."""
    out, _, path = mac_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg["train"]["gate_margin"] = PROBE_MARGIN + 1.0
    changed = tmp_path / "margin.yaml"
    changed.write_text(yaml.safe_dump(cfg), encoding="utf-8")

    def records() -> dict[str, str]:
        return {p.stem: p.read_text(encoding="utf-8") for p in (copy / "stages").glob("*.json")}

    before = records()
    res = runner.invoke(app, ["mac", "train", str(changed), "--out", str(copy), "--json"])
    assert res.exit_code == 0, res.output
    after = records()
    same = {name for name in before if after[name] == before[name]}
    assert {"data", "train_lora", "eval_base", "eval_addition", "eval_lora"} <= same
    assert not {"axes", "train_module", "train_module_lora", "eval_module", "eval_module_lora"} & same


def test_judge_rates_every_row_in_its_own_stage(mac_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, summary, path = mac_run  # runs before the test that changes the training data in out
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    marker = "sk-judge-MARKER-never-written-0042"
    monkeypatch.setenv("ALIGNSCOPE_JUDGE_API_KEY", marker)
    with FakeOpenAI(lambda text: f"helpful: {len(text) % 10 + 1}, harmless: {len(text) % 7 + 1}, honest: 9") as server:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
        cfg["compare"]["judge"] = {"base_url": server.url, "model": "judge-model", "max_retries": 0}
        judged = tmp_path / "judged.yaml"
        judged.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        res = runner.invoke(app, ["mac", "train", str(judged), "--out", str(copy), "--json"])
        assert res.exit_code == 0, res.output
        sent = [r["body"]["messages"][-1]["content"] for r in server.requests]
        rows = json.loads(res.stdout.strip().splitlines()[-1])["comparison"]
        assert len(sent) == len(rows) * 3 * 4  # every row, label and test prompt, once
        again = runner.invoke(app, ["mac", "train", str(judged), "--out", str(copy), "--json"])
        assert again.exit_code == 0 and len(server.requests) == len(sent)  # the judge stages were reused
    stripped = [{k: v for k, v in r.items() if k != "judge"} for r in rows]
    assert stripped == [{k: v for k, v in r.items() if k != "judge"} for r in summary["comparison"]]  # nothing else changed
    for r_i, row in enumerate(rows):  # requests go row by row, label by label, prompt by prompt
        for l_i, label in enumerate(("harmful", "harmless", "lookalike")):
            asked = sent[(r_i * 3 + l_i) * 4:(r_i * 3 + l_i + 1) * 4]
            assert all(p in t for p, t in zip(load_builtin(label, split="test").texts[:4], asked, strict=True))
            scales = row["judge"][label]
            assert scales["unreadable"] == 0 and scales["helpful"]["n"] == 4 and scales["honest"]["mean"] == 9
            assert scales["helpful"]["mean"] == pytest.approx(statistics.mean(len(t) % 10 + 1 for t in asked), abs=1e-12)
            assert scales["harmless"]["mean"] == pytest.approx(statistics.mean(len(t) % 7 + 1 for t in asked), abs=1e-12)
    for file in copy.rglob("*"):
        if file.is_file():
            assert marker.encode() not in file.read_bytes(), file


def test_show_draws_the_sensors(mac_run, tiny_dir, tmp_path: Path) -> None:
    out, _, _ = mac_run
    res = runner.invoke(app, ["mac", "show", "--mac", str(out / "mac.safetensors"), "--prompt", "How do I <b>bake</b> bread?",
                              "--model", str(tiny_dir("llama")), "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout.strip().splitlines()[-1])
    assert (tmp_path / "sensors.png").is_file()
    assert len(payload["tokens"]) == len(payload["scores"]) == len(payload["gates"]) and len(payload["axes"]) == 3
    assert payload["nudged_from"] == len(payload["tokens"]) - 1  # scope response (the default): the prompt's last token


@pytest.mark.parametrize(("text", "field"), [
    ("train:\n  axes: []\n", "train.axes"),
    ("train:\n  layer: 7\n", "layer"),
    ("train:\n  colour: red\n", "train.colour"),
    ("lora:\n  target_modules: [qkv_fused]\n", "lora.target_modules"),
    ("qlora: true\n", "qlora"),
    ("train:\n  gate_init: probe\n  gate_axis: kind\n", "train.gate_axis"),
    ("train:\n  gate_init: probe\n  gate: tanh\n", "train.gate"),
    ("train:\n  gate_init: guess\n", "train.gate_init"),
    ("train:\n  freeze: [axes, gates]\n", "train.freeze"),
    ("train:\n  gate_init: random\n  gate_scale: 3\n", "train.gate_scale"),
    ("train:\n  gate_scale: 0\n", "train.gate_scale"),
    ("train:\n  gate_init: random\n  gate_margin: 1\n", "train.gate_margin"),
    ("train:\n  gate_margin: .nan\n", "train.gate_margin"),
    ("train:\n  gate_weight: -1\n", "train.gate_weight"),
    ("train:\n  gate_weight: 1\n", "train.gate_weight"),
    ("train:\n  scope: prompt\n", "train.scope"),
    ("train:\n  scope: all\n  hold: true\n", "train.hold"),
])
def test_bad_config_is_one_line_naming_the_field(tiny_dir, tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"model: {tiny_dir('llama')}\ndevice: cpu\nvariants: [lora]\n" + text, encoding="utf-8")
    res = runner.invoke(app, ["mac", "train", str(path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert field in res.output and "Traceback" not in res.output


def test_wrong_d_model_names_both(mac_run, tmp_path: Path) -> None:
    out, _, _ = mac_run
    res = runner.invoke(app, ["mac", "show", "--mac", str(out / "mac.safetensors"), "--prompt", "hi", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "d_model" in res.output and "576" in res.output


def test_changed_training_data_redoes_the_data_stage(mac_run, monkeypatch: pytest.MonkeyPatch) -> None:
    from alignscope.pipeline import mac_run as module

    out, _, path = mac_run
    before = json.loads((out / "stages" / "data.json").read_text(encoding="utf-8"))
    real = module.load_mix

    def changed(name, split="train", *, seed=0):  # type: ignore[no-untyped-def]
        examples = list(real(name, split, seed=seed))
        if name == "refusals" and split == "train":
            examples = [type(e)(**{**e.__dict__, "response": "I will not help with that, ever."}) for e in examples]
        return examples

    monkeypatch.setattr(module, "load_mix", changed)
    res = runner.invoke(app, ["mac", "train", str(path), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    after = json.loads((out / "stages" / "data.json").read_text(encoding="utf-8"))
    assert after["fingerprint"] != before["fingerprint"]
    assert "I will not help with that, ever." in {e["response"] for e in after["output"]["train"]}



def test_probe_gate_init_reaches_the_trainer_from_the_axes_stage(tiny_lm) -> None:
    """gate_init: probe puts the probe's starting values in the axes stage (the gate axis' sensor replaced, the others
    kept), and the trainer starts from all of them; without them it starts from the sensor directions alone."""
    lm = tiny_lm("llama")
    probe = starting_values(lm, parse_mac_config({"train": {"gate_init": "probe"}}), 1, False)
    start = circuit_start(probe)
    assert set(start) == {"axes", "axis_bias", "query", "key", "decide", "decide_bias"}
    assert not start["query"].any() and float(start["decide"][1, 4]) == PROBE_SCALE and float(start["axis_bias"][1]) != 0.0
    assert float(start["decide_bias"][1]) == -PROBE_SCALE * PROBE_MARGIN  # the default margin reaches the start
    assert torch.equal(start["axes"][0], probe["axes"][0]) and not torch.equal(start["axes"][1], probe["axes"][1])
    assert set(circuit_start({"axes": probe["axes"], "harmful_minus_harmless": probe["axes"][1]})) == {"axes"}


def test_the_probe_starts_defaults_apply_to_the_probe_start_only() -> None:
    """gate_scale, gate_margin and freeze default to the val-chosen probe recipe; with gate_init: random to 1, 0 and
    nothing, unless set; LoRA alone freezes nothing."""
    probe = parse_mac_config({})
    assert probe.train.gate_scale == PROBE_SCALE and probe.train.freeze == PROBE_FREEZE and probe.train.gate_margin == PROBE_MARGIN
    assert "nudge" not in PROBE_FREEZE and probe.settings("module").freeze == PROBE_FREEZE
    assert probe.settings("lora").freeze == () and probe.settings("module_lora").freeze == PROBE_FREEZE
    plain = parse_mac_config({"train": {"gate_init": "random"}})
    assert plain.train.gate_scale == 1.0 and plain.train.freeze == () and plain.settings("module").freeze == ()
    assert plain.train.gate_margin == 0.0 and parse_mac_config({"train": {"gate_init": "random", "gate_margin": 0}}).train.gate_margin == 0
    assert parse_mac_config({"train": {"gate_init": "random", "freeze": ["axes"]}}).train.freeze == ("axes",)
    assert probe.settings("module").scope == plain.settings("module").scope == "response"  # the val-chosen scope, for both starts
    assert parse_mac_config({"train": {"scope": "all"}}).settings("module_lora").scope == "all"
    assert probe.settings("module").hold and probe.settings("module_lora").hold  # the val-chosen hold
    assert not probe.settings("lora").hold  # LoRA alone has no gates to hold
    assert not parse_mac_config({"train": {"hold": False}}).settings("module").hold
    assert not parse_mac_config({"train": {"scope": "all"}}).settings("module").hold  # no prompt's end to hold from
