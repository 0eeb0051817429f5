from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest
import torch
import transformers
import transformers.modeling_utils
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from alignscope.errors import DiskFullError
from alignscope.io import atomic_dir, atomic_write_json, save_safetensors, write_safetensors_streaming


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


def _enospc(*_: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_names_the_file_and_keeps_the_old_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ckpt.json"
    atomic_write_json(path, {"step": 1})
    before = path.read_bytes()
    monkeypatch.setattr(os, "fsync", _enospc)  # where a full disk often shows first (delayed allocation)
    with pytest.raises(DiskFullError) as info:
        atomic_write_json(path, {"step": 2, "losses": [0.5] * 100})
    monkeypatch.undo()
    msg = str(info.value)
    assert msg.startswith(f"{path}: ") and "disk is full" in msg and "\n" not in msg
    assert isinstance(info.value, OSError) and info.value.path == str(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["ckpt.json"]  # no temporary left


def test_other_os_errors_pass_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_: object) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="I/O error") as info:
        atomic_write_json(tmp_path / "x.json", {})
    assert not isinstance(info.value, DiskFullError)


def test_atomic_dir_replaces_the_directory_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("one", encoding="utf-8")
        assert not target.exists()  # filled aside
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("two", encoding="utf-8")
        raise RuntimeError("killed")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]  # the old directory is untouched
    with atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("two", encoding="utf-8")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]  # replaced whole, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_dir_full_disk_names_the_directory(tmp_path: Path) -> None:
    with pytest.raises(DiskFullError, match=f"^{tmp_path / 'model'}: could not write"), atomic_dir(tmp_path / "model"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


# What safetensors' Rust writer raised on a real full file system (a 256 KiB tmpfs) when this test was written.
RUST_ENOSPC = "Error while serializing: I/O error: No space left on device (os error 28)"


@pytest.mark.parametrize(("message", "full"), [(RUST_ENOSPC, True), ("Error while serializing: I/O error: Disk quota exceeded "
                                                                      f"(os error {errno.EDQUOT})", True),
                                                ("Error while serializing: I/O error: Permission denied (os error 13)", False),
                                                ("Error while serializing: header too large", False)])
def test_atomic_dir_reads_a_full_disk_in_safetensors_errors(tmp_path: Path, message: str, full: bool) -> None:
    """``save_pretrained`` writes its weights with safetensors' own writer, which reports a full disk as a SafetensorError,
    not an OSError: it is a full disk only when the OS error it carries says so."""
    with pytest.raises(DiskFullError if full else SafetensorError) as info, atomic_dir(tmp_path / "model"):
        raise SafetensorError(message)
    assert isinstance(info.value, DiskFullError) == full
    assert list(tmp_path.iterdir()) == []


def test_save_pretrained_on_a_full_disk_names_the_directory(tiny_dir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real ``save_pretrained``, whose safetensors writer fails as it does on a full disk: one error naming the
    directory, and the previous directory untouched."""
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_dir("llama"))
    target = tmp_path / "merged"
    with atomic_dir(target) as tmp:
        (tmp / "old.txt").write_text("kept", encoding="utf-8")

    def full(*_: object, **__: object) -> None:
        raise SafetensorError(RUST_ENOSPC)

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", full)
    with pytest.raises(DiskFullError, match=f"^{target}: could not write"), atomic_dir(target) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
    assert [p.name for p in target.iterdir()] == ["old.txt"] and [p.name for p in tmp_path.iterdir()] == ["merged"]


def test_save_safetensors_is_byte_for_byte_reproducible(tmp_path: Path) -> None:
    tensors = {"w": torch.randn(3, 4), "half": torch.randn(5).to(torch.bfloat16), "scalar": torch.tensor(2.5),
               "mask": torch.tensor([True, False]), "ids": torch.arange(4), "empty": torch.zeros(0, 3)}
    meta = {f"k{i}": str(i) for i in range(8)}
    blobs = set()
    for i in range(6):  # metadata given in different orders; safetensors' own save orders it by a random hash
        order = list(meta.items())[i:] + list(meta.items())[:i]
        save_safetensors(tmp_path / f"t{i}.safetensors", tensors, dict(order))
        blobs.add((tmp_path / f"t{i}.safetensors").read_bytes())
    assert len(blobs) == 1
    loaded = load_file(str(tmp_path / "t0.safetensors"))
    assert loaded.keys() == tensors.keys()
    assert all(loaded[k].dtype == v.dtype and torch.equal(loaded[k], v) for k, v in tensors.items())
    with safe_open(str(tmp_path / "t0.safetensors"), framework="pt") as fh:
        assert fh.metadata() == meta
