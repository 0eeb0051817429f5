"""Addition, ablation and clamp against plain-HF hooks on a fresh model, in padded batches and in generate."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from alignscope.errors import InputError
from alignscope.models.chat import left_pad
from alignscope.steering.intervention_io import load_intervention, save_intervention
from alignscope.steering.interventions import (
    ABLATION_COMPONENTS,
    ActivationAddition,
    DirectionalAblation,
    Intervention,
    ProjectionClamp,
)
from tests.reference import load_plain
from tests.steering import plain

SEQS = [[10, 11, 12, 13, 14, 15, 16, 17], [20, 21, 22], [30, 31, 32, 33, 34]]


def batch(pad: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    return left_pad(SEQS, pad)


def vec(seed: int, d: int = 32) -> torch.Tensor:
    return torch.randn(d, generator=torch.Generator().manual_seed(seed))


def clamp_edit(d: torch.Tensor, value: float) -> plain.Edit:
    u = d / d.norm()
    return lambda x: x + (value - x @ u).unsqueeze(-1) * u


def cases(n_layers: int) -> list[tuple[Intervention, list[tuple[int, str, plain.Edit]]]]:
    v, d = vec(0), vec(1)
    return [
        (ActivationAddition(v, (1,), 2.5), [(1, "resid_pre", plain.add(2.5 * v))]),
        (ActivationAddition(v, (0, 1), -1.0, component="resid_post"),
         [(0, "resid_post", plain.add(-v)), (1, "resid_post", plain.add(-v))]),
        (DirectionalAblation(d), [(layer, comp, plain.project_out(d)) for layer in range(n_layers) for comp in ABLATION_COMPONENTS]),
        (ProjectionClamp(d, (0, 1), 3.0), [(0, "resid_pre", clamp_edit(d, 3.0)), (1, "resid_pre", clamp_edit(d, 3.0))]),
    ]


def test_logits_match_plain_hooks_and_restore(family, tiny_lm, tiny_dir) -> None:
    lm = tiny_lm(family)
    ids, mask = batch()
    plain.check_cases(lm, load_plain(tiny_dir(family)), ids, mask, cases(lm.n_layers))


@pytest.mark.parametrize("family", ["llama", "gpt2", "falcon"])
def test_generate_with_kv_cache_matches_manual_loop(family, tiny_lm, tiny_dir) -> None:
    lm = tiny_lm(family)
    ref_model = load_plain(tiny_dir(family))
    ids, mask = batch(pad=int(lm.tokenizer.pad_token_id))
    for iv, sites in cases(lm.n_layers)[::2]:
        with torch.no_grad(), iv.apply(lm):
            out = lm.hf_model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                                       pad_token_id=int(lm.tokenizer.pad_token_id), eos_token_id=None)
        with plain.edits(ref_model, sites):
            want = plain.greedy_no_cache(ref_model, ids, mask, 6)
        assert torch.equal(out[:, ids.shape[1]:], want), iv.kind


def test_hooks_removed_on_exception(tiny_lm) -> None:
    lm = tiny_lm("llama")
    ids, mask = batch()
    before = lm.bridge(ids, attention_mask=mask)
    with pytest.raises(RuntimeError, match="boom"), DirectionalAblation(vec(1)).apply(lm):
        raise RuntimeError("boom")
    assert torch.equal(lm.bridge(ids, attention_mask=mask), before)
    handle = ActivationAddition(vec(0), (0,), 1.0).attach(lm)
    assert handle.active
    handle.remove()
    handle.remove()  # idempotent
    assert torch.equal(lm.bridge(ids, attention_mask=mask), before)


def test_bad_shapes_and_layers_are_clear(tiny_lm) -> None:
    lm = tiny_lm("llama")
    with pytest.raises(InputError, match="d_model is 32"):
        ActivationAddition(torch.ones(7), (0,)).attach(lm)
    with pytest.raises(Exception, match="valid layers are 0..1"):
        ActivationAddition(torch.ones(32), (5,)).attach(lm)
    with pytest.raises(InputError, match="zero vector"):
        DirectionalAblation(torch.zeros(32))
    with pytest.raises(InputError, match="1-D"):
        ActivationAddition(torch.ones(2, 32), (0,))


def test_save_load_roundtrip(tiny_lm, tmp_path: Path) -> None:
    lm = tiny_lm("qwen2")
    ids, mask = batch()
    for iv, _ in cases(lm.n_layers):
        path = save_intervention(tmp_path / iv.kind, iv, model="tiny-qwen2")
        assert path.name == "intervention.safetensors"
        back = load_intervention(path)
        assert back.kind == iv.kind and type(back) is type(iv)
        with torch.no_grad(), iv.apply(lm):
            a = lm.bridge(ids, attention_mask=mask)
        with torch.no_grad(), back.apply(lm):
            b = lm.bridge(ids, attention_mask=mask)
        assert torch.equal(a, b)
        _, meta = iv.to_tensors()
        assert meta


def test_load_errors_name_file_and_field(tmp_path: Path) -> None:
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(InputError, match="does not exist"):
        load_intervention(missing)
    bad_kind = tmp_path / "kind.safetensors"
    save_file({"vector": torch.ones(4)}, str(bad_kind), metadata={"kind": "teleport"})
    with pytest.raises(InputError, match="kind.safetensors.*field 'kind'.*unknown intervention kind"):
        load_intervention(bad_kind)
    no_vec = tmp_path / "novec.safetensors"
    save_file({"other": torch.ones(4)}, str(no_vec), metadata={"kind": "addition", "layers": "[0]", "coefficients": "[1.0]"})
    with pytest.raises(InputError, match="novec.safetensors.*field 'vector'"):
        load_intervention(no_vec)
    bad_layers = tmp_path / "layers.safetensors"
    save_file({"vector": torch.ones(4)}, str(bad_layers), metadata={"kind": "addition", "layers": "zero", "coefficients": "[1]"})
    with pytest.raises(InputError, match="field 'layers'"):
        load_intervention(bad_layers)
    not_st = tmp_path / "junk.safetensors"
    not_st.write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="junk.safetensors"):
        load_intervention(not_st)
