"""Direction files: round trip, metadata, and errors that name the file and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from alignscope.cli import app
from alignscope.errors import InputError
from alignscope.steering.direction_io import load_direction, save_direction
from alignscope.steering.directions import diff_in_means

META = {"model": "m", "layer": 3, "position": -1, "method": "diff_in_means", "data_sha256": "ab" * 32}


def test_roundtrip(tmp_path: Path) -> None:
    v = torch.randn(16)
    save_direction(tmp_path / "d.safetensors", v, {**META, "component": "resid_pre"})
    d = load_direction(tmp_path / "d.safetensors", d_model=16)
    assert torch.equal(d.vector, v) and d.layer == 3 and d.position == "-1" and d.method == "diff_in_means"
    assert d.meta["component"] == "resid_pre" and d.data_sha256 == "ab" * 32
    vec, meta = d
    assert torch.equal(vec, v) and meta["model"] == "m"


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="missing metadata"):
        save_direction(tmp_path / "x.safetensors", torch.ones(4), {"model": "m"})
    with pytest.raises(InputError, match="direction"):
        save_direction(tmp_path / "x.safetensors", torch.ones(2, 4), META)
    with pytest.raises(InputError, match="does not exist"):
        load_direction(tmp_path / "none.safetensors")
    save_file({"v": torch.ones(4)}, str(tmp_path / "k.safetensors"))
    with pytest.raises(InputError, match=r"k\.safetensors, field 'direction'.*holds \['v'\]"):
        load_direction(tmp_path / "k.safetensors")
    save_file({"direction": torch.ones(4)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(InputError, match=r"w\.safetensors, field 'direction'.*4 entries.*d_model is 8"):
        load_direction(tmp_path / "w.safetensors", d_model=8)
    save_file({"direction": torch.zeros(4)}, str(tmp_path / "z.safetensors"))
    with pytest.raises(InputError, match="zero"):
        load_direction(tmp_path / "z.safetensors")


def test_cli_directions_matches_library(tiny_dir, tiny_lm, tmp_path: Path) -> None:
    pos, neg = tmp_path / "pos.jsonl", tmp_path / "neg.jsonl"
    pos.write_text("\n".join(json.dumps({"prompt": p}) for p in ["do a bad thing", "harm them"]), encoding="utf-8")
    neg.write_text("\n".join(json.dumps({"prompt": p}) for p in ["bake bread", "sing a song"]), encoding="utf-8")
    out = tmp_path / "dir.safetensors"
    res = CliRunner().invoke(app, ["directions", "--model", str(tiny_dir("llama")), "--positive", str(pos), "--negative", str(neg),
                                   "--layer", "1", "--positions", "last", "--out", str(out), "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout.strip().splitlines()[-1])
    want = diff_in_means(tiny_lm("llama"), ["do a bad thing", "harm them"], ["bake bread", "sing a song"], positions="last")
    d = load_direction(out)
    torch.testing.assert_close(d.vector, want.direction(1, -1))
    assert d.layer == 1 and d.method == "diff_in_means" and data["n_positive"] == 2 and len(data["norms_by_layer"]) == 2
