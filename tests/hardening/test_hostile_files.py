"""Hostile files: pickles offered anywhere are refused by name before anything opens them; weights load as safetensors only."""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from alignscope.cli import app
from alignscope.errors import InputError
from alignscope.io import read_safetensors
from alignscope.models.loader import load_model
from alignscope.pipeline.model_catalog import load_catalog
from alignscope.steering.circuit import load_circuit
from alignscope.steering.direction_io import load_direction
from alignscope.steering.intervention_io import load_intervention


class Boom:
    """Unpickling this would run code: the test fails if anything unpickles it."""

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return (pytest.fail, ("a pickle was opened",))


@pytest.mark.parametrize("reader", [load_intervention, load_direction, load_circuit, lambda p: read_safetensors(p, "file")])
@pytest.mark.parametrize("suffix", [".pt", ".pth", ".pkl", ".bin", ".ckpt"])
def test_pickles_are_refused_by_name(tmp_path: Path, reader: Callable[[Path], Any], suffix: str) -> None:
    path = tmp_path / f"vector{suffix}"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(InputError, match="never unpickles") as info:
        reader(path)
    assert str(path) in str(info.value)


def test_cli_refuses_a_pickled_intervention(tiny_dir, tmp_path: Path) -> None:
    path = tmp_path / "steer.pt"
    torch.save({"direction": torch.zeros(4)}, path)
    res = CliRunner().invoke(app, ["generate", "--model", str(tiny_dir("llama")), "--prompt", "hi", "--intervention", str(path)])
    assert res.exit_code == 2 and "never unpickles" in res.output and "Traceback" not in res.output


def test_model_directory_with_only_pickled_weights(tiny_dir, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_dir("llama"), folder)
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(InputError, match="never unpickles"):
        load_model(str(folder), device="cpu")


@pytest.mark.parametrize("key", ["../evil", "/abs", "a/b", "..", ".hidden", "a\\b", "x" * 101])
def test_registry_keys_cannot_escape_the_output_folder(tmp_path: Path, key: str) -> None:
    reg = tmp_path / "models.yaml"
    reg.write_text(f"models:\n  {json.dumps(key)}:\n    tiny: llama\n", encoding="utf-8")
    with pytest.raises(InputError, match="names its output folder") as info:
        load_catalog(reg)
    assert str(reg) in str(info.value)
