from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file
from typer.testing import CliRunner

from alignscope.cli import app

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


def test_error_text_with_brackets_is_shown_verbatim(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("text,[/label]\nhello,x\n", encoding="utf-8")
    res = runner.invoke(app, ["capture", "--prompts", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "['text', '[/label]']" in res.output.replace("\n", "")
