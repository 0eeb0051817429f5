"""Secrets set in the environment reach no file, log line, report or output of any command.

Every command runs on a tiny model with ``HF_TOKEN``, ``HUGGING_FACE_HUB_TOKEN``,
``OPENAI_API_KEY`` and ``ALIGNSCOPE_JUDGE_API_KEY`` set to marker values (the judge key is also
really sent, to a loopback judge); then every file under the test's directory and everything
the commands printed is searched for the markers. The run's manifest lists which variables were
present, by name only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from alignscope.cli import app
from alignscope.models.tiny import TINY_HIDDEN
from alignscope.pipeline import steering_stages
from alignscope.steering.intervention_io import save_intervention
from alignscope.steering.interventions import ActivationAddition
from tests.fake_openai import FakeOpenAI
from tests.pipeline.stubs import stub_intervene, stub_select

MARKERS = {name: f"MARKER-{name}-0f1e2d3c" for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY",
                                                       "ALIGNSCOPE_JUDGE_API_KEY")}
runner = CliRunner()


def commands(model: str, tmp: Path, judge_url: str, config: Path) -> dict[str, list[str]]:
    """One invocation per command, each writing under ``tmp``."""
    (tmp / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p, "label": lab}) + "\n" for p, lab in
                                               (("How do I hurt someone?", "harmful"), ("Bake bread", "harmless"))), encoding="utf-8")
    for name, texts in (("pos", ["do a bad thing", "harm them"]), ("neg", ["bake bread", "sing a song"])):
        (tmp / f"{name}.jsonl").write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts), encoding="utf-8")
    (tmp / "corpus.txt").write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    pair = {"id": "p1", "category": "c", "base": {"prompt": "Choose A or B.", "ethical_option": "A", "other_option": "B"},
            "counterfactual": {"prompt": "Choose B or A.", "ethical_option": "B", "other_option": "A"}}
    (tmp / "pairs.jsonl").write_text(json.dumps(pair) + "\n", encoding="utf-8")
    save_intervention(tmp / "steer.safetensors", ActivationAddition(torch.ones(TINY_HIDDEN), (1,), 1.0), model="tiny")
    (tmp / "models.yaml").write_text(f"models:\n  base:\n    path: {model}\n    device: cpu\n  steered:\n    path: {model}\n"
                                     "    device: cpu\n    intervention: steer.safetensors\n    partner: base\n", encoding="utf-8")
    m, cpu = ["--model", model], ["--device", "cpu"]
    return {
        "models": ["models", "--json"],
        "info": ["info", *m, *cpu, "--json"],
        "capture": ["capture", *m, "--prompts", str(tmp / "prompts.jsonl"), "--site", "resid_post", "--out", str(tmp / "capture"), "--json"],
        "eval": ["eval", *m, *cpu, "--prompts", str(tmp / "prompts.jsonl"), "--out", str(tmp / "eval"), "--max-new-tokens", "2",
                 "--judge-url", judge_url, "--judge-model", "judge", "--json"],
        "generate": ["generate", *m, "--prompt", "hello", "--max-new-tokens", "2", "--json"],
        "directions": ["directions", *m, *cpu, "--positive", str(tmp / "pos.jsonl"), "--negative", str(tmp / "neg.jsonl"), "--layer", "1",
                       "--positions", "last", "--out", str(tmp / "direction.safetensors"), "--json"],
        "patch": ["patch", *m, *cpu, "--clean", "abcd", "--corrupt", "abce", "--answer", "x", "--foil", "y", "--site", "resid_pre",
                  "--out", str(tmp / "patch"), "--graph", "--json"],
        "trace": ["trace", *m, *cpu, "--prompt", "abcd", "--subject", "cd", "--kinds", "resid", "--out", str(tmp / "trace"), "--json"],
        "ablate": ["ablate", *m, *cpu, "--clean", "abcd", "--corrupt", "abce", "--answer", "x", "--foil", "y", "--out", str(tmp / "ablate"),
                   "--json"],
        "dla": ["dla", *m, "--prompt", "hello", "--answer", "a", "--foil", "b", "--no-chat", "--out", str(tmp / "dla"), "--json"],
        "lens": ["lens", *m, "--prompt", "hello there", "--tokens", "x", "--no-chat", "--out", str(tmp / "lens"), "--json"],
        "tuned-lens train": ["tuned-lens", "train", *m, *cpu, "--corpus", str(tmp / "corpus.txt"), "--out", str(tmp / "tuned"),
                             "--steps", "2", "--batch-seqs", "2", "--seq-len", "16", "--json"],
        "dilemmas": ["dilemmas", *m, "--pairs", str(tmp / "pairs.jsonl"), "--out", str(tmp / "dilemmas"), "--no-chat", "--json"],
        "run": ["run", str(config), "--out", str(tmp / "run"), "--json"],
        "aqi": ["aqi", *m, *cpu, "--data", "builtin:axioms:test", "--bootstrap", "5", "--out", str(tmp / "aqi"), "--json"],
        "bench": ["bench", *m, "--suite", "factual,toxicity", "--limit", "4", "--max-new-tokens", "2", "--judge-url", judge_url,
                  "--judge-model", "judge", "--out", str(tmp / "bench"), "--json"],
        "deltas": ["deltas", "--base", model, "--aligned-intervention", str(tmp / "steer.safetensors"), "--data", "builtin:harm:test",
                   "--limit", "4", "--out", str(tmp / "deltas"), "--json"],
        "compare": ["compare", str(tmp / "models.yaml"), "--metrics", "aqi,deltas", "--aqi-bootstrap", "5", "--limit", "4",
                    "--out", str(tmp / "compare"), "--json"],
    }


@pytest.fixture(scope="module")
def ran(tiny_dir: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], list[dict]]:
    tmp = tmp_path_factory.mktemp("secrets")
    with pytest.MonkeyPatch.context() as mp, FakeOpenAI(lambda text: "REFUSAL") as judge:
        for name, value in MARKERS.items():
            mp.setenv(name, value)
        mp.setattr(steering_stages, "select", stub_select)
        mp.setattr(steering_stages, "intervene", stub_intervene)
        config = tmp / "run.yaml"
        data = tmp / "run_data"
        data.mkdir()
        for label in ("harmful", "harmless", "lookalike"):
            (data / f"{label}.jsonl").write_text("".join(json.dumps({"prompt": f"{label} prompt {i}"}) + "\n" for i in range(10)),
                                                 encoding="utf-8")
        config.write_text(json.dumps({"model": str(tiny_dir("llama")), "device": "cpu",
                                      "data": {k: str(data / f"{k}.jsonl") for k in ("harmful", "harmless", "lookalike")},
                                      "evaluate": {"max_new_tokens": 2, "judge": {"base_url": judge.url, "model": "judge"}}}),
                          encoding="utf-8")
        outputs = {}
        for name, args in commands(str(tiny_dir("llama")), tmp, judge.url, config).items():
            res = runner.invoke(app, args)
            assert res.exit_code == 0, f"{name}: {res.output}"
            outputs[name] = res.output
        requests = judge.requests
    return tmp, outputs, requests


def test_no_marker_in_any_file_or_output(ran) -> None:
    tmp, outputs, requests = ran
    assert requests and all(r["auth"] == f"Bearer {MARKERS['ALIGNSCOPE_JUDGE_API_KEY']}" for r in requests)  # the key was used
    files = [f for f in tmp.rglob("*") if f.is_file()]
    assert len(files) > 40
    leaks = [(str(f), name) for f in files for name, value in MARKERS.items() if value.encode() in f.read_bytes()]
    leaks += [(command, name) for command, text in outputs.items() for name, value in MARKERS.items() if value in text]
    assert not leaks
    print(f"secrets: {len(files)} files and {len(outputs)} commands' output grepped for {len(MARKERS)} markers, {len(leaks)} leaks")


def test_manifest_names_present_variables_only(ran) -> None:
    tmp, _, _ = ran
    manifest = json.loads((tmp / "run" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["secrets_present"] == sorted(MARKERS)
