from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from alignscope.io import atomic_write_json, save_safetensors, write_safetensors_streaming


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    atomic_write_json(target, {"a": 1})
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    with pytest.raises(TypeError):
        atomic_write_json(target, {"a": object()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind


def test_streaming_writer_equals_safetensors(tmp_path: Path) -> None:
    a = torch.randn(5, 3, 2)
    b = torch.arange(7)
    write_safetensors_streaming(
        tmp_path / "s.safetensors",
        {"a": (torch.float32, (5, 3, 2)), "b": (torch.int64, (7,))},
        {"a": iter([a[:2], a[2:]]), "b": iter([b])},
        metadata={"k": "v"},
    )
    loaded = load_file(str(tmp_path / "s.safetensors"))
    assert torch.equal(loaded["a"], a) and torch.equal(loaded["b"], b)
    save_safetensors(tmp_path / "t.safetensors", {"a": a})
    assert torch.equal(load_file(str(tmp_path / "t.safetensors"))["a"], a)
    with pytest.raises(ValueError, match="chunks held"):
        write_safetensors_streaming(tmp_path / "bad.safetensors", {"a": (torch.float32, (5, 3, 2))}, {"a": iter([a[:2]])})
    assert not (tmp_path / "bad.safetensors").exists()


def test_save_safetensors_bytes_depend_only_on_content(tmp_path: Path) -> None:
    tensors = {"w": torch.randn(4, 3, dtype=torch.bfloat16), "scalar": torch.tensor(2.5), "mask": torch.tensor([True, False]),
               "ids": torch.arange(6, dtype=torch.int32).reshape(2, 3)[:, ::2], "empty": torch.zeros(0, 2)}
    meta = {f"k{i}": f"v{i}" for i in range(12)}
    save_safetensors(tmp_path / "a.safetensors", tensors, meta)
    save_safetensors(tmp_path / "b.safetensors", dict(reversed(list(tensors.items()))), dict(reversed(list(meta.items()))))
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    with safe_open(str(tmp_path / "a.safetensors"), framework="pt") as fh:  # the library reads it back exactly
        assert fh.metadata() == meta
        for name, t in tensors.items():
            got = fh.get_tensor(name)
            assert got.dtype == t.dtype and torch.equal(got, t)
