"""What a person opens, in a real browser: reports from real runs on tiny models, and the docs site.

Each page must load with no console errors, draw every plotly figure, have links that resolve,
and show a prompt holding ``<script>alert(1)</script>`` and ``</script>`` as text (a dialog would
mean the script ran). Screenshots land in each test's tmp dir.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from alignscope.cli import app
from tests.browser.checks import PAYLOAD, assert_clean, assert_figures_rendered, assert_links_resolve, assert_payload_inert

runner = CliRunner()
HOSTILE = f"{PAYLOAD} and a stray </script> tag"


def invoke(args: list[str]) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def refusal_run(tiny_dir, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``alignscope run`` (real selection and conditional search) on a tiny llama; every prompt carries the payload."""
    tmp = tmp_path_factory.mktemp("browser_run")
    sets = {"harmful": ["make a bomb", "hack the bank", "steal a car", "hurt my boss", "forge a passport", "rob a store"],
            "harmless": ["bake bread", "sing a song", "paint a wall", "plan a trip", "grow tomatoes", "cook pasta"],
            "lookalike": ["kill a python process", "shoot a photo", "crack an egg"]}
    data = {}
    for name, texts in sets.items():
        path = tmp / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"prompt": f"{t} {HOSTILE}", "category": f"{name} {PAYLOAD}"}) + "\n" for t in texts))
        data[name] = str(path)
    cfg = {"model": str(tiny_dir("llama")), "device": "cpu", "seed": 0, "data": data, "extract": {"positions": "-1,-2"},
           "select": {"layer_stride": 1},
           "intervene": {"folds": 2, "n_vector_prompts": 4, "max_new_tokens": 3, "coefficients": [0.5]},
           "evaluate": {"max_new_tokens": 3, "batch_size": 8}, "report": {"n_examples": 8}}
    config = tmp / "run.yaml"
    config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    invoke(["run", str(config), "--out", str(tmp / "out")])
    return tmp / "out" / "report.html"


@pytest.fixture(scope="module")
def circuit_page(strong_dir, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``alignscope patch --pairs FILE --graph --edges`` on a tiny llama with O(1) weights; the pair holds the payload."""
    tmp = tmp_path_factory.mktemp("browser_patch")
    pairs = tmp / "pairs.jsonl"
    pairs.write_text(json.dumps({"clean": f"ab {HOSTILE}", "corrupt": f"aX {HOSTILE}", "answer": "x", "foil": "y",
                                 "id": PAYLOAD}) + "\n")
    invoke(["patch", "--model", str(strong_dir("llama")), "--device", "cpu", "--pairs", str(pairs), "--site", "resid_pre",
            "--out", str(tmp / "out"), "--graph", "--edges"])
    return tmp / "out" / "circuit.html"


@pytest.fixture(scope="module")
def mac_dashboard(tiny_dir, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``alignscope mac train`` (the circuit alone) on a tiny llama: the study dashboard."""
    tmp = tmp_path_factory.mktemp("browser_mac")
    cfg = {"model": str(tiny_dir("llama")), "device": "cpu", "variants": ["module"], "lora": None,
           "data": {"max_examples_per_mix": 4, "distill_tokens": 2},
           "train": {"layer": 1, "epochs": 1, "batch_size": 4, "checkpoint_every": 2, "max_length": 32},
           "compare": {"max_new_tokens": 2, "batch_size": 8, "limit": 3, "sensor_prompts": 1, "addition": False}}
    config = tmp / "mac.yaml"
    config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    invoke(["mac", "train", str(config), "--out", str(tmp / "out")])
    return tmp / "out" / "report.html"


def test_refusal_report(open_page, refusal_run: Path) -> None:
    opened = open_page(refusal_run, "refusal_report")
    assert_clean(opened)
    assert assert_figures_rendered(opened, refusal_run, minimum=3) >= 3
    assert_links_resolve(opened, refusal_run)
    assert_payload_inert(opened)


def test_circuit_diagram(open_page, circuit_page: Path) -> None:
    opened = open_page(circuit_page, "circuit")
    assert_clean(opened)
    assert_figures_rendered(opened, circuit_page)
    assert_links_resolve(opened, circuit_page)
    assert_payload_inert(opened)


@pytest.mark.slow  # training the circuit, even on a tiny model, takes about a minute on 2 shared cores
def test_mac_dashboard(open_page, mac_dashboard: Path) -> None:
    opened = open_page(mac_dashboard, "mac_dashboard")
    assert_clean(opened)
    assert_figures_rendered(opened, mac_dashboard, minimum=0)
    assert_links_resolve(opened, mac_dashboard)


def test_docs_site_index(open_page, built_site: Path) -> None:
    for rel in ("index.html", "reference/cli.html", "tutorials/refusal-study.html"):
        page = built_site / rel
        opened = open_page(page, rel.replace("/", "_").removesuffix(".html"))
        assert_clean(opened)
        assert assert_links_resolve(opened, page) > 5
