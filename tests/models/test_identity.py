from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch

from alignscope.models import identity
from alignscope.models.identity import model_identity, resume_key, weights_hash
from alignscope.models.loader import load_model


def _reference_weights_sha(directory: Path) -> tuple[str, dict[str, str]]:
    """hashlib over the bytes of each weight file, then over the sorted (name, hash) pairs as JSON."""
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir() if p.suffix == ".safetensors"}
    return hashlib.sha256(json.dumps(sorted(files.items())).encode()).hexdigest(), files


def test_weights_hash_matches_hashlib_over_the_file_bytes(tiny_dir, tmp_path: Path) -> None:
    combined, files = _reference_weights_sha(tiny_dir("llama"))
    assert files and weights_hash(tiny_dir("llama")) == {"sha256": combined, "files": files}
    assert weights_hash(tmp_path) == {"sha256": None, "files": {}}  # no weight files


def test_same_weights_under_two_names_share_one_identity(tiny_dir, tiny_copy) -> None:
    original = load_model(str(tiny_dir("llama")), device="cpu")
    renamed = load_model(str(tiny_copy("llama")), device="cpu")
    changed = load_model(str(tiny_copy("llama", True)), device="cpu")
    a, b, c = (model_identity(m) for m in (original, renamed, changed))
    assert a.name != b.name and a.key() == b.key() == resume_key(_reference_weights_sha(tiny_dir("llama"))[0], "float32")
    assert c.key() != a.key() and c.weights_sha256 == _reference_weights_sha(tiny_copy("llama", True))[0]
    assert (a.model_type, a.n_layers, a.d_model) == ("llama", original.n_layers, original.d_model)


def test_hashed_once_per_model_and_per_file(tiny_dir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    real = identity.sha256_file
    monkeypatch.setattr(identity, "sha256_file", lambda p: calls.append(Path(p)) or real(p))
    monkeypatch.setattr(identity, "_FILE_DIGESTS", {})
    lm = load_model(str(tiny_dir("gpt2")), device="cpu")
    first = model_identity(lm)
    assert model_identity(lm) is first and len(calls) == 1
    assert model_identity(load_model(str(tiny_dir("gpt2")), device="cpu")) == first and len(calls) == 1  # same file, same process
    monkeypatch.setattr(identity, "_FILE_DIGESTS", {})  # a new process: the cache file answers
    cache = tmp_path / "hashes.json"
    weights_hash(tiny_dir("gpt2"), cache)
    monkeypatch.setattr(identity, "_FILE_DIGESTS", {})
    assert weights_hash(tiny_dir("gpt2"), cache)["sha256"] == first.weights_sha256 and len(calls) == 2


def test_model_without_weight_files_is_hashed_from_its_tensors(tiny_lm, tmp_path: Path) -> None:
    lm = dataclasses.replace(tiny_lm("llama"), source=str(tmp_path / "built-in-memory"), extra={})
    digest = hashlib.sha256(json.dumps([]).encode())  # no metadata, then each tensor in name order
    for name, t in sorted(lm.hf_model.state_dict().items()):
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.detach().contiguous().numpy().tobytes())
    assert model_identity(lm).weights_sha256 == digest.hexdigest()
    with torch.no_grad():
        other = dataclasses.replace(lm, extra={})
        param = next(lm.hf_model.parameters())
        param.view(-1)[0] += 1.0
        try:
            assert model_identity(other).weights_sha256 != digest.hexdigest()
        finally:
            param.view(-1)[0] -= 1.0
