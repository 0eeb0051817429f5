"""Weight orthogonalisation reproduces hook-based directional ablation when reloaded by plain transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from alignscope.cli import app
from alignscope.errors import AlignscopeError
from alignscope.models.chat import left_pad
from alignscope.steering.direction_io import save_direction
from alignscope.steering.interventions import DirectionalAblation
from alignscope.steering.weight_edit import orthogonalize_to_dir
from tests.reference import load_plain
from tests.steering import plain

SEQS = [[10, 11, 12, 13, 14, 15, 16, 17], [20, 21, 22], [30, 31, 32, 33, 34]]
EXACT = ["llama", "mistral", "qwen2", "qwen3", "gpt2", "falcon"]
runner = CliRunner()


def direction(seed: int = 5) -> torch.Tensor:
    return torch.randn(32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("family", EXACT)
def test_edited_dir_matches_hook_ablation(family, tiny_lm, tmp_path: Path) -> None:
    lm = tiny_lm(family)
    d = direction()
    ids, mask = left_pad(SEQS, 3)
    real = mask.bool()
    with torch.no_grad(), DirectionalAblation(d).apply(lm):
        hooked = lm.bridge(ids, attention_mask=mask)
    with torch.no_grad():
        untouched = lm.bridge(ids, attention_mask=mask)
    res = orthogonalize_to_dir(lm, d, tmp_path / "edited")
    edited = plain.plain_logits(load_plain(tmp_path / "edited"), ids, mask)
    assert (edited[real] - hooked[real]).abs().max() <= 1e-3
    assert (untouched[real] - hooked[real]).abs().max() > 1e-2  # the ablation does something
    tied = bool(lm.hf_model.config.tie_word_embeddings)
    assert res.tied_unembedding_untied == tied and res.layers_edited == lm.n_layers and res.exact
    assert json.loads((tmp_path / "edited" / "alignscope_edit.json").read_text())["layers_edited"] == lm.n_layers
    # the live model is untouched: the edit worked on a fresh copy
    with torch.no_grad():
        assert torch.equal(lm.bridge(ids, attention_mask=mask), untouched)


def test_post_sublayer_norm_refused_unless_allowed(tiny_lm, tmp_path: Path) -> None:
    lm = tiny_lm("gemma2")
    with pytest.raises(AlignscopeError, match="post|normalises"):
        orthogonalize_to_dir(lm, direction(), tmp_path / "g")
    assert not (tmp_path / "g").exists()
    res = orthogonalize_to_dir(lm, direction(), tmp_path / "g", allow_inexact=True)
    assert not res.exact and (tmp_path / "g" / "config.json").is_file()


def test_refuses_foreign_nonempty_out(tiny_lm, tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(AlignscopeError, match="not empty"):
        orthogonalize_to_dir(tiny_lm("llama"), direction(), tmp_path / "x")


def test_cli_edit_json_and_errors(tiny_dir, tmp_path: Path) -> None:
    model = str(tiny_dir("llama"))
    good = tmp_path / "dir.safetensors"
    save_direction(good, direction(), {"model": "tiny", "layer": 1, "position": -1, "method": "test", "data_sha256": "0" * 64})
    res = runner.invoke(app, ["edit", "--model", model, "--ablate-direction", str(good), "--out", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout.strip().splitlines()[-1])
    assert {"out", "model", "direction_norm", "layers_edited", "tied_unembedding_untied", "seconds"} <= set(data)
    assert data["layers_edited"] == 2 and abs(data["direction_norm"] - float(direction().norm())) < 1e-4
    from safetensors.torch import save_file

    save_file({"vec": torch.ones(32)}, str(tmp_path / "nokey.safetensors"))
    res = runner.invoke(app, ["edit", "--model", model, "--ablate-direction", str(tmp_path / "nokey.safetensors"), "--out", str(tmp_path / "p")])
    assert res.exit_code == 2 and "nokey.safetensors" in res.output and "'direction'" in res.output
    save_file({"direction": torch.ones(7)}, str(tmp_path / "short.safetensors"))
    res = runner.invoke(app, ["edit", "--model", model, "--ablate-direction", str(tmp_path / "short.safetensors"), "--out", str(tmp_path / "q")])
    assert res.exit_code == 2 and "short.safetensors" in res.output and "d_model is 32" in res.output
    save_file({"direction": torch.ones(2, 32)}, str(tmp_path / "matrix.safetensors"))
    res = runner.invoke(app, ["edit", "--model", model, "--ablate-direction", str(tmp_path / "matrix.safetensors"), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "(d_model,)" in res.output
