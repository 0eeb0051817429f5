from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from alignscope.cli import app
from tests.lenses.test_tuned_lens import CORPUS

runner = CliRunner()


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def test_dla_json_contract_and_files(tiny_dir, tmp_path: Path) -> None:
    model = str(tiny_dir("gemma2"))
    res = runner.invoke(app, ["dla", "--model", model, "--prompt", "hello", "--answer", "a", "--foil", "b", "--no-chat",
                              "--by-head", "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    data = last_json(res.stdout)
    comps = data["components"]
    assert {c["component"] for c in comps} == {"embed", "attn", "mlp", "head"}
    assert all(set(c) == {"component", "layer", "head", "value"} for c in comps)
    assert sum(c["component"] == "head" for c in comps) == 2 * 4
    assert comps[0] == {"component": "embed", "layer": None, "head": None, "value": comps[0]["value"]}
    parts = sum(c["value"] for c in comps if c["component"] != "head") + data["remainder"]
    assert abs(parts - data["logit_diff"]) <= 1e-4
    assert len(data["attn_mlp_ratio"]) == 2
    for name in ("dla.json", "dla_layers.png", "attn_mlp_ratio.png", "dla_heads.png"):
        assert (tmp_path / name).is_file()
    plain = runner.invoke(app, ["dla", "--model", model, "--prompt", "hello", "--answer", "a", "--foil", "b", "--no-chat", "--json"])
    assert all(c["component"] != "head" for c in last_json(plain.stdout)["components"])


def test_lens_json_contract(tiny_dir, tmp_path: Path) -> None:
    res = runner.invoke(app, ["lens", "--model", str(tiny_dir("qwen2")), "--prompt", "hello there", "--tokens", "x",
                              "--tokens", "y", "--top-k", "3", "--no-chat", "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    layers = last_json(res.stdout)["layers"]
    assert [entry["layer"] for entry in layers] == [0, 1]
    for entry in layers:
        assert set(entry) == {"layer", "top_token_ids", "top_tokens", "top_probs", "tracked"}
        assert len(entry["top_token_ids"]) == 3 and entry["top_probs"] == sorted(entry["top_probs"], reverse=True)
        assert set(entry["tracked"]) == {"x", "y"} and set(entry["tracked"]["x"]) == {"id", "logit", "prob", "rank"}
    assert (tmp_path / "lens_tracked_ranks.png").is_file()
    bad = runner.invoke(app, ["lens", "--model", str(tiny_dir("qwen2")), "--prompt", "hi", "--tokens", "xy", "--no-chat"])
    assert bad.exit_code == 2 and "single token" in bad.output


def test_tuned_lens_train_eval_cli(sharp_lm, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    out = tmp_path / "lens"
    common = ["--model", sharp_lm.source, "--device", "cpu"]
    res = runner.invoke(app, ["tuned-lens", "train", *common, "--corpus", str(corpus), "--out", str(out), "--steps", "4",
                              "--batch-seqs", "2", "--seq-len", "24", "--lr", "0.01", "--json"])
    assert res.exit_code == 0, res.output
    train = last_json(res.stdout)
    assert train["train"]["steps"] == 4 and len(train["losses"]) == 4 and (out / "tuned_lens.safetensors").is_file()
    res = runner.invoke(app, ["tuned-lens", "eval", *common, "--lens", str(out), "--text-file", str(corpus), "--seq-len", "24",
                              "--out", str(tmp_path / "ev"), "--json"])
    assert res.exit_code == 0, res.output
    ev = last_json(res.stdout)
    assert len(ev["kl_logit_lens"]) == len(ev["kl_tuned_lens"]) == 2
    assert ev["kl_tuned_lens"][0] < ev["kl_logit_lens"][0]
    assert (tmp_path / "ev" / "lens_eval.png").is_file()
    res = runner.invoke(app, ["lens", *common, "--prompt", "the fox", "--no-chat", "--tuned", str(out), "--json"])
    assert res.exit_code == 0 and last_json(res.stdout)["lens"] == "tuned"
    missing = runner.invoke(app, ["tuned-lens", "eval", *common, "--lens", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no tuned lens here" in missing.output
