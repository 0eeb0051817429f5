"""``alignscope bench``: files, the --json line, paired deltas, determinism and bad input, on a tiny model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from alignscope.cli import app
from alignscope.data.bias import read_crows
from alignscope.data.facts import load_facts
from alignscope.evals.crows import evaluate_crows
from alignscope.evals.factual import evaluate_facts
from alignscope.stats import mcnemar
from alignscope.steering.intervention_io import save_intervention
from alignscope.steering.interventions import ActivationAddition

runner = CliRunner()
SUITES = "refusal,factual,bias,toxicity,perplexity"


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def iv_file(lm, tmp_path: Path, name: str = "add.safetensors") -> Path:
    vec = torch.randn(lm.d_model, generator=torch.Generator().manual_seed(0)) * 4
    return save_intervention(tmp_path / name, ActivationAddition(vec, (1,), 1.0, "resid_post"), model=lm.name)


def bench(model: Path, out: Path, suites: str, *extra: str):
    return runner.invoke(app, ["bench", "--model", str(model), "--suite", suites, "--out", str(out), "--max-new-tokens", "2",
                               "--device", "cpu", "--json", *extra])


def test_bench_writes_the_table_and_paired_deltas(tiny_dir, tiny_lm, tmp_path: Path) -> None:
    lm = tiny_lm("llama")
    f = iv_file(lm, tmp_path)
    res = bench(tiny_dir("llama"), tmp_path / "out", SUITES, "--intervention", str(f))
    assert res.exit_code == 0, res.output
    payload = last_json(res.stdout)
    iv = str(f)
    assert payload["models"][1] == iv and len(payload["models"]) == 2
    assert set(payload["suites"]) == set(SUITES.split(","))
    assert set(payload["suites"]["toxicity"]) == {"toxic_share_weak_proxy"} and "weak proxy" in payload["notes"]["toxicity"]
    assert "noisy" in payload["notes"]["bias"]
    for suite, metrics in payload["suites"].items():
        for metric, per in metrics.items():
            assert set(per) == set(payload["models"])
            for v in per.values():
                assert set(v) == {"value", "ci95", "n"} and v["n"] > 0
            d = payload["deltas"][iv][suite][metric]
            base, after = per[payload["models"][0]]["value"], per[iv]["value"]
            if base == base and after == after:  # not NaN
                assert d["diff"] == pytest.approx(after - base)
    assert payload["suites"]["perplexity"]["first_token_kl"][payload["models"][0]]["value"] == 0.0
    # factual accuracy and CrowS share are the library's scorers on the same items
    facts = evaluate_facts(lm, load_facts())
    assert payload["suites"]["factual"]["accuracy"][payload["models"][0]]["value"] == facts.accuracy.rate
    steered = evaluate_crows(lm, read_crows(), ActivationAddition(torch.randn(lm.d_model, generator=torch.Generator().manual_seed(0)) * 4,
                                                                  (1,), 1.0, "resid_post"))
    assert payload["suites"]["bias"]["crows_stereotype_share"][iv]["value"] == steered.share.rate
    # a rate's delta is McNemar on the discordant pairs
    base_facts = facts.correct
    after_facts = evaluate_facts(lm, load_facts(), ActivationAddition(torch.randn(lm.d_model, generator=torch.Generator().manual_seed(0)) * 4,
                                                                      (1,), 1.0, "resid_post")).correct
    lost = sum(a == 1 and b == 0 for a, b in zip(base_facts, after_facts, strict=True))
    gained = sum(a == 0 and b == 1 for a, b in zip(base_facts, after_facts, strict=True))
    assert payload["deltas"][iv]["factual"]["accuracy"]["p"] == mcnemar(lost, gained)[0]
    out = tmp_path / "out"
    for name in ("bench.json", "bench.csv", "bench_deltas.png", "report.html"):
        assert (out / name).stat().st_size > 0
    with (out / "bench.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * sum(len(m) for m in payload["suites"].values())
    assert all(r["diff"] == "" for r in rows if r["model"] == payload["models"][0])
    html = (out / "report.html").read_text()
    assert "weak proxy" in html and "noisy" in html and "<h2>bench</h2>" in html
    # the same command gives the same numbers
    again = bench(tiny_dir("llama"), tmp_path / "again", "factual,bias", "--intervention", str(f))
    second = last_json(again.stdout)
    assert second["suites"]["factual"] == payload["suites"]["factual"] and second["deltas"][iv]["bias"] == payload["deltas"][iv]["bias"]


def test_unknown_suite_lists_the_valid_ones(tiny_dir, tmp_path: Path) -> None:
    res = bench(tiny_dir("llama"), tmp_path / "o", "refusal,vibes")
    assert res.exit_code == 2
    assert "'vibes'" in res.output and "truthfulqa" in res.output and "perplexity" in res.output and "Traceback" not in res.output


def test_intervention_for_another_model_names_both(tiny_dir, tiny_lm, tmp_path: Path) -> None:
    lm = tiny_lm("llama")
    other = save_intervention(tmp_path / "other.safetensors", ActivationAddition(torch.ones(lm.d_model + 5), (0,)), model="some/other-model")
    res = bench(tiny_dir("llama"), tmp_path / "o", "factual", "--intervention", str(other))
    assert res.exit_code == 2
    [line] = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert "'some/other-model'" in line and repr(lm.name) in line and "other.safetensors" in line and "d_model" in line


def test_bad_bbq_file_names_file_and_line(tiny_dir, tmp_path: Path) -> None:
    bad = tmp_path / "bbq.jsonl"
    bad.write_text(json.dumps({"context": "c", "question": "q"}) + "\n")
    res = bench(tiny_dir("llama"), tmp_path / "o", "bias", "--bbq", str(bad))
    assert res.exit_code == 2 and "bbq.jsonl, line 1" in res.output
