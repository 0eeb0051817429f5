"""``--intervention FILE`` on patch, dla and generate: any kind, checked against independent computations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from alignscope.circuits.replay import Patch, record_run, replay
from alignscope.cli import app
from alignscope.evals.generation import generate_detailed
from alignscope.metrics import logit_diff_metric
from alignscope.steering.circuit import AlignmentCircuit
from alignscope.steering.intervention_io import save_intervention
from alignscope.steering.interventions import ActivationAddition, intervention_scope

runner = CliRunner()
CLEAN, CORRUPT = "abcde fg", "abXde Yg"
PATCH = ["--clean", CLEAN, "--corrupt", CORRUPT, "--answer", "x", "--foil", "y", "--device", "cpu", "--json"]
DLA = ["--prompt", "hello", "--answer", "a", "--foil", "b", "--no-chat", "--device", "cpu", "--json"]
GEN = ["--prompt", "hello there", "--prompt", "abc", "--max-new-tokens", "5", "--no-chat", "--device", "cpu", "--json"]


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def addition(lm, layer: int = 1, component: str = "resid_pre") -> ActivationAddition:
    gen = torch.Generator().manual_seed(0)
    return ActivationAddition(torch.randn(lm.d_model, generator=gen) * 4, (layer,), 1.0, component)


def circuit(lm, layer: int = 0) -> AlignmentCircuit:
    c = AlignmentCircuit.new(lm.d_model, layer)
    with torch.no_grad():
        c.net.nudge.copy_(torch.randn(c.net.nudge.shape, generator=torch.Generator().manual_seed(1)) * 3)
    return c


def invoke(cmd: str, model: Path, args: list[str], iv_file: Path | None = None):
    extra = [] if iv_file is None else ["--intervention", str(iv_file)]
    return runner.invoke(app, [cmd, "--model", str(model), *args, *extra])


def test_patch_with_addition_is_the_steered_model(tiny_dir, tiny_lm, tmp_path: Path) -> None:
    lm = tiny_lm("llama")
    iv = addition(lm)
    f = save_intervention(tmp_path / "add.safetensors", iv, model=lm.name)
    plain = invoke("patch", tiny_dir("llama"), PATCH)
    steered = invoke("patch", tiny_dir("llama"), PATCH, f)
    assert plain.exit_code == 0 and steered.exit_code == 0, steered.output
    a, b = last_json(plain.stdout), last_json(steered.stdout)
    assert a["effect"] != b["effect"] and a["clean_metric"] != b["clean_metric"]
    x, y = lm.tokenizer.convert_tokens_to_ids(["x", "y"])
    ids = lm.tokenizer(CLEAN)["input_ids"]
    with iv.apply(lm), torch.no_grad():  # an independent plain bridge forward under the intervention
        logits = lm.bridge(torch.tensor([ids]))[0, -1]
    assert b["clean_metric"] == pytest.approx(float(logits[x] - logits[y]), abs=1e-4)


def test_replay_applies_a_resid_pre_write_once(tiny_lm) -> None:
    # patching at the intervention's own layer equals a full steered forward with the same patch
    lm = tiny_lm("llama")
    iv = addition(lm, layer=1)
    ids = lm.tokenizer(CLEAN)["input_ids"]
    x, y = lm.tokenizer.convert_tokens_to_ids(["x", "y"])
    metric = logit_diff_metric(x, y)
    with iv.apply(lm):
        rec = record_run(lm, ids, ["mlp_out"])
        values = replay(lm, rec, [[Patch(1, "mlp_out", (0,), source="zero")], [Patch(0, "mlp_out", (2,), source="zero")]], {}, metric)

        def zero_at(pos: int):
            def hook(_m, _i, out):
                out = out.clone()
                out[:, pos] = 0
                return out
            return hook

        for value, (layer, pos) in zip(values.tolist(), [(1, 0), (0, 2)], strict=True):
            handle = lm.bridge.blocks[layer].mlp.hook_out.register_forward_hook(zero_at(pos))
            try:
                with torch.no_grad():
                    full = lm.bridge(torch.tensor([ids]))[:, -1:]
            finally:
                handle.remove()
            assert value == pytest.approx(float(metric(full)[0]), abs=1e-4)


def test_dla_with_addition_reports_the_intervention_part(tiny_dir, tiny_lm, tmp_path: Path) -> None:
    lm = tiny_lm("llama")
    iv = addition(lm, layer=1)
    f = save_intervention(tmp_path / "add.safetensors", iv, model=lm.name)
    plain = invoke("dla", tiny_dir("llama"), DLA)
    steered = invoke("dla", tiny_dir("llama"), DLA, f)
    assert plain.exit_code == 0 and steered.exit_code == 0, steered.output
    a, b = last_json(plain.stdout), last_json(steered.stdout)
    assert "intervention" not in a and all(r["component"] != "intervention" for r in a["components"])
    a_id, b_id = lm.tokenizer.convert_tokens_to_ids(["a", "b"])
    ids = lm.tokenizer("hello")["input_ids"]
    with iv.apply(lm), torch.no_grad():
        logits = lm.bridge(torch.tensor([ids]))[0, -1]
    assert b["logit_diff"] == pytest.approx(float(logits[a_id] - logits[b_id]), abs=1e-4)
    assert b["logit_diff"] != pytest.approx(a["logit_diff"], abs=1e-4)
    parts = [r["value"] for r in b["components"]]
    assert parts[-1] == b["intervention"] and abs(b["intervention"]) > 1e-3
    assert sum(parts) + b["remainder"] == pytest.approx(b["logit_diff"], abs=1e-3)
    assert b["max_abs_error"] < 1e-3


def test_generate_with_addition_matches_the_library(tiny_dir, tiny_lm, tmp_path: Path) -> None:
    lm = tiny_lm("llama")
    iv = addition(lm, layer=0, component="resid_post")
    f = save_intervention(tmp_path / "add.safetensors", iv, model=lm.name)
    plain = invoke("generate", tiny_dir("llama"), GEN)
    steered = invoke("generate", tiny_dir("llama"), GEN, f)
    assert plain.exit_code == 0 and steered.exit_code == 0, steered.output
    a, b = last_json(plain.stdout), last_json(steered.stdout)
    assert set(b) == {"model", "intervention", "generations", "tokens_per_second", "seconds"}
    assert a["intervention"] is None and b["intervention"] == "addition"
    with intervention_scope(lm, iv):
        lib = generate_detailed(lm, ["hello there", "abc"], chat=False, max_new_tokens=5, backend="bridge")
    assert [g["generation"] for g in b["generations"]] == lib.texts
    assert [g["n_tokens"] for g in b["generations"]] == [len(t) for t in lib.token_ids]
    assert [g["prompt"] for g in b["generations"]] == ["hello there", "abc"]
    assert [g["generation"] for g in a["generations"]] != lib.texts


def test_generate_reads_a_prompt_source(tiny_dir, tmp_path: Path) -> None:
    src = tmp_path / "p.jsonl"
    src.write_text('{"prompt": "one"}\n{"prompt": "two"}\n', encoding="utf-8")
    res = runner.invoke(app, ["generate", "--model", str(tiny_dir("llama")), "--prompts", str(src), "--max-new-tokens", "2",
                              "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    assert [g["prompt"] for g in last_json(res.stdout)["generations"]] == ["one", "two"]
    both = runner.invoke(app, ["generate", "--model", str(tiny_dir("llama")), "--prompts", str(src), "--prompt", "x"])
    assert both.exit_code == 2 and "--prompt" in both.output


def test_alignment_circuit_file_is_accepted_everywhere(tiny_dir, tiny_lm, tmp_path: Path) -> None:
    lm = tiny_lm("llama")
    c = circuit(lm, layer=0)
    f = save_intervention(tmp_path / "mac.safetensors", c, model=lm.name)
    model = tiny_dir("llama")
    for cmd, args in (("patch", PATCH), ("dla", DLA), ("generate", GEN), ("trace", ["--prompt", CLEAN, "--subject", "abc",
                      "--answer", "x", "--foil", "y", "--device", "cpu", "--json"])):
        plain, steered = invoke(cmd, model, args), invoke(cmd, model, args, f)
        assert steered.exit_code == 0, (cmd, steered.output)
        assert last_json(plain.stdout) != last_json(steered.stdout), cmd
    # patch: the clean metric is the circuit-steered forward's
    b = last_json(invoke("patch", model, PATCH, f).stdout)
    x, y = lm.tokenizer.convert_tokens_to_ids(["x", "y"])
    with c.apply(lm), torch.no_grad():
        logits = lm.bridge(torch.tensor([lm.tokenizer(CLEAN)["input_ids"]]))[0, -1]
    assert b["clean_metric"] == pytest.approx(float(logits[x] - logits[y]), abs=1e-4)


@pytest.mark.parametrize("cmd,args", [("patch", PATCH), ("dla", DLA), ("generate", GEN), ("eval", ["--prompts", "builtin:harmless",
                                      "--out", "OUT", "--device", "cpu"])])
def test_bad_intervention_file_is_one_line(cmd, args, tiny_dir, tmp_path: Path) -> None:
    args = [str(tmp_path / "o") if a == "OUT" else a for a in args]
    missing = invoke(cmd, tiny_dir("llama"), args, tmp_path / "nope.safetensors")
    assert missing.exit_code == 2 and "nope.safetensors" in missing.output and "Traceback" not in missing.output
    wide = save_intervention(tmp_path / "wide.safetensors", ActivationAddition(torch.ones(7), (0,)), model="x")
    bad = invoke(cmd, tiny_dir("llama"), args, wide)
    assert bad.exit_code == 2, bad.output
    lines = [ln for ln in bad.output.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "wide.safetensors" in lines[0] and "'vector'" in lines[0] and "d_model" in lines[0]
