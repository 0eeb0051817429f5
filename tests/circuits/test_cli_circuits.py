from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import torch
from typer.testing import CliRunner

from alignscope.circuits.patching import activation_patching
from alignscope.cli import app
from alignscope.metrics import logit_diff_metric

runner = CliRunner()
CLEAN, CORRUPT = "abcde fg", "abXde Yg"


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def test_patch_json_contract_and_files(strong_dir, strong_lm, tmp_path: Path) -> None:
    model = str(strong_dir("llama"))
    out = tmp_path / "out"
    res = runner.invoke(app, ["patch", "--model", model, "--device", "cpu", "--clean", CLEAN, "--corrupt", CORRUPT,
                              "--answer", "x", "--foil", "y", "--site", "resid_pre", "--out", str(out), "--graph", "--edges", "--json"])
    assert res.exit_code == 0, res.output
    data = last_json(res.stdout)
    assert {"site", "method", "tokens", "effect", "clean_metric", "corrupt_metric", "seconds"} <= set(data)
    assert data["site"] == "resid_pre" and data["method"] == "activation"
    lm = strong_lm("llama")
    ids = lm.tokenizer(CLEAN)["input_ids"]  # raw tokenisation, as tokenizer(text)
    assert data["tokens"] == lm.tokenizer.convert_ids_to_tokens(ids)
    x, y = lm.tokenizer.convert_tokens_to_ids(["x", "y"])
    lib = activation_patching(lm, ids, lm.tokenizer(CORRUPT)["input_ids"], metric=logit_diff_metric(x, y))
    torch.testing.assert_close(torch.tensor(data["effect"]), lib.effect, atol=1e-5, rtol=0)
    assert data["clean_metric"] == lib.clean_metric and isinstance(data["seconds"], float)
    for name in ("resid_pre_activation_effect.png", "summary.csv", "effects.json", "result.json", "circuit.json", "circuit.html",
                 "circuit.graphml", "circuit_edges.json", "circuit_edges.graphml"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert list(rows[0]) == ["id", "clean", "corrupt", "answer", "foil", "clean_metric", "corrupt_metric", "peak_layer", "peak_col",
                             "peak_label", "peak_effect", "n_flips", "n_patches", "gini_layers", "top5_concentration", "seconds"]
    graph = json.loads((out / "circuit.json").read_text())
    assert graph["schema"] == "alignscope.circuit_graph/v1" and len(graph["nodes"]) == 16  # 2 layers x 8 positions < top 20
    assert graph["nodes"][0]["rank"] == 1 and abs(graph["nodes"][0]["score"]) == float(lib.effect.abs().max())
    edges = json.loads((out / "circuit_edges.json").read_text())
    assert edges["edges"] and {"source", "target", "score"} <= set(edges["edges"][0])
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    root = ET.parse(out / "circuit_edges.graphml").getroot()
    assert len(root.findall(".//g:edge", ns)) == len(edges["edges"])
    html = (out / "circuit.html").read_text()
    assert "Plotly.newPlot" in html and "<script src=" not in html  # self-contained


def test_patch_pairs_mean_and_attribution(strong_dir, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps(p) for p in [
        {"clean": CLEAN, "corrupt": CORRUPT, "answer": "x", "foil": "y", "id": "a"},
        {"clean": "hello wor", "corrupt": "hexlo wxr", "answer": "x", "foil": "y", "id": "b"}]), encoding="utf-8")
    out = tmp_path / "o"
    res = runner.invoke(app, ["patch", "--model", str(strong_dir("qwen2")), "--device", "cpu", "--pairs", str(pairs), "--site", "head",
                              "--method", "attribution", "--ig-steps", "2", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    data = last_json(res.stdout)
    assert data["method"] == "attribution-ig" and data["n_pairs"] == 2 and len(data["effect"]) == 2 and len(data["effect"][0]) == 4
    per_pair = json.loads((out / "effects.json").read_text())["pairs"]
    mean = (torch.tensor(per_pair[0]["effect"]) + torch.tensor(per_pair[1]["effect"])) / 2
    torch.testing.assert_close(torch.tensor(data["effect"]), mean)
    assert [r["id"] for r in csv.DictReader((out / "summary.csv").open())] == ["a", "b"]


def test_patch_misaligned_pair_is_one_clear_line(strong_dir) -> None:
    res = runner.invoke(app, ["patch", "--model", str(strong_dir("llama")), "--device", "cpu", "--clean", "abc", "--corrupt", "abcd",
                              "--answer", "x", "--foil", "y"])
    assert res.exit_code == 2
    assert "same number of tokens" in res.output and "Traceback" not in res.output


def test_trace_and_ablate_json(strong_dir, tmp_path: Path) -> None:
    model = str(strong_dir("gpt2"))
    res = runner.invoke(app, ["trace", "--model", model, "--device", "cpu", "--prompt", CLEAN, "--subject", "cd", "--kinds", "resid,mlp",
                              "--window", "2", "--out", str(tmp_path / "t"), "--json"])
    assert res.exit_code == 0, res.output
    data = last_json(res.stdout)
    assert data["method"] == "causal_tracing" and set(data["effect"]) == {"resid_post", "mlp_out"}
    assert len(data["effect"]["mlp_out"]) == 2 and data["subject_positions"] == [2, 3]
    assert (tmp_path / "t" / "trace_mlp.png").is_file()
    trace_rows = list(csv.DictReader((tmp_path / "t" / "trace_summary.csv").open()))
    assert list(trace_rows[0]) == ["id", "prompt", "subject", "kind", "answer", "metric", "clean_metric", "corrupt_metric",
                                   "peak_layer", "peak_col", "peak_label", "peak_effect", "n_flips", "n_patches", "gini_layers",
                                   "top5_concentration", "seconds"]
    res = runner.invoke(app, ["ablate", "--model", model, "--device", "cpu", "--clean", CLEAN, "--corrupt", CORRUPT, "--answer", "x",
                              "--foil", "y", "--site", "head", "--k", "3", "--permutations", "20", "--method", "zero",
                              "--out", str(tmp_path / "a"), "--graph", "--json"])
    assert res.exit_code == 0, res.output
    data = last_json(res.stdout)
    assert data["site"] == "head" and len(data["components"]) == 3 and len(data["curve"]) == 4
    assert 0 < data["permutation"]["p_value"] <= 1 and data["permutation"]["n_permutations"] == 20
    for name in ("ablation_curve.png", "ablation_per_prompt.csv", "ranking.csv", "circuit.json", "circuit.html"):
        assert (tmp_path / "a" / name).is_file(), name
