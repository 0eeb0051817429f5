"""Numerical guards: inf/NaN in a forward pass raise an error naming the first non-finite site, never a NaN result.

The reference for "where it began" is the planted cause: an intervention that writes inf at one
known site, or one layer's MLP weights scaled until float16 overflows there. A plain-HF forward
hook run confirms independently that the planted layer is the first whose output is not finite.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from alignscope.cli import app
from alignscope.errors import NumericalError
from alignscope.evals.generation import generate_detailed
from alignscope.hooks.backends import BridgeTarget, NativeTarget
from alignscope.hooks.forward import next_token_logits
from alignscope.hooks.numerics import all_finite, first_non_finite
from alignscope.hooks.read import read
from alignscope.lenses import train_loop
from alignscope.models.batches import padded_batches
from alignscope.models.loader import load_model
from alignscope.models.native import native_model
from alignscope.recipes.mac_train import TrainSettings, train
from alignscope.sites import Site
from alignscope.steering.interventions import intervention_scope
from tests.evals.standins import AddVector

SEQS = [[10, 11, 12, 13, 14, 15], [20, 21], [30, 31, 32, 33]]


def test_all_finite_looks_only_at_real_positions() -> None:
    values = torch.zeros(2, 3, 4)
    values[0, 0] = float("nan")  # a pad position
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    assert all_finite(values, mask)
    assert not all_finite(values)
    values[1, 2, 3] = float("inf")
    assert not all_finite(values, mask)


@pytest.mark.parametrize("component", ["attn_out", "mlp_out", "resid_post"])
def test_planted_inf_is_named_on_every_target(tiny_lm, component: str) -> None:
    lm = tiny_lm("llama")
    site = Site(1, component)
    vec = torch.zeros(lm.d_model)
    vec[3] = float("inf")
    iv = AddVector(site, vec)
    targets = [BridgeTarget(lm)] + ([NativeTarget(twin)] if (twin := native_model(lm)) is not None else [])
    assert len(targets) == 2
    for target in targets:
        with intervention_scope(lm, iv, target), pytest.raises(NumericalError) as err:
            next_token_logits(lm, target, padded_batches(SEQS, 3, pad=3))
        assert err.value.site == site, target.name
        assert f"layer 1 {component}" in str(err.value) and "float32" in str(err.value)
    with torch.no_grad():  # the same model without the intervention is finite: the guard is not a false alarm
        assert torch.isfinite(next_token_logits(lm, targets[0], padded_batches(SEQS, 3, pad=3))).all()


def test_read_and_generation_are_guarded(tiny_lm) -> None:
    lm = tiny_lm("llama")
    vec = torch.full((lm.d_model,), float("nan"))
    iv = AddVector(Site(1, "mlp_out"), vec)
    with intervention_scope(lm, iv, BridgeTarget(lm)), pytest.raises(NumericalError, match="layer 1 mlp_out"):
        read(lm, [Site(0, "resid_post")], torch.tensor([SEQS[0]]))
    # stopping before the planted layer computes no logits and reads finite activations: no error
    with intervention_scope(lm, iv, BridgeTarget(lm)):
        got = read(lm, [Site(0, "resid_post")], torch.tensor([SEQS[0]]), stop_at_layer=1)
    assert torch.isfinite(got.acts[Site(0, "resid_post")]).all()
    with pytest.raises(NumericalError, match=r"generation step 0's logits: they first appear at layer 1 mlp_out"):
        generate_detailed(lm, ["hello"], max_new_tokens=3, intervention=iv)


def _overflowing_copy(src: Path, dst: Path, layer: int) -> Path:
    """The tiny llama with one layer's MLP weights scaled so that float16 overflows there (not float32)."""
    model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32)
    mlp = model.model.layers[layer].mlp
    with torch.no_grad():
        for proj in (mlp.gate_proj, mlp.up_proj, mlp.down_proj):
            proj.weight.mul_(1e5)
    model.save_pretrained(dst)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if (src / name).exists():
            (dst / name).write_bytes((src / name).read_bytes())
    return dst


def _plain_first_non_finite(path: Path, ids: torch.Tensor) -> int | None:
    """Independent reference: plain HF in float16 with forward hooks on each decoder layer's MLP."""
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float16, attn_implementation="eager")
    bad: list[int] = []
    handles = [layer.mlp.register_forward_hook(lambda _m, _i, out, i=i: bad.append(i) if not torch.isfinite(out).all() else None)
               for i, layer in enumerate(model.model.layers)]
    with torch.no_grad():
        model(ids)
    for h in handles:
        h.remove()
    return bad[0] if bad else None


def test_float16_overflow_is_named_by_layer_and_site(tiny_dir, tmp_path: Path) -> None:
    path = _overflowing_copy(tiny_dir("llama"), tmp_path / "overflow", layer=1)
    ids = torch.tensor([SEQS[0]])
    assert _plain_first_non_finite(path, ids) == 1
    lm = load_model(str(path), device="cpu", dtype="float16")
    site = first_non_finite(BridgeTarget(lm), lm.n_layers, ids, None)
    assert site == Site(1, "mlp_out")
    with pytest.raises(NumericalError, match=r"layer 1 mlp_out .*float16 overflowed; rerun with --dtype float32"):
        next_token_logits(lm, BridgeTarget(lm), padded_batches(SEQS, 3, pad=3))
    float32 = load_model(str(path), device="cpu", dtype="float32")  # the advice works: float32 does not overflow
    assert torch.isfinite(next_token_logits(float32, BridgeTarget(float32), padded_batches(SEQS, 3, pad=3))).all()


def test_cli_shows_one_line_and_writes_no_nan(tiny_dir, tmp_path: Path) -> None:
    path = _overflowing_copy(tiny_dir("llama"), tmp_path / "overflow", layer=1)
    out = tmp_path / "eval"
    res = CliRunner().invoke(app, ["generate", "--model", str(path), "--prompt", "hello there", "--max-new-tokens", "2",
                                   "--dtype", "float16", "--device", "cpu", "--json"])
    assert res.exit_code == 2, res.output
    errors = [line for line in res.stderr.splitlines() if "error" in line]  # stderr also holds the loader's progress bars
    assert len(errors) == 1 and "layer 1 mlp_out" in errors[0] and "Traceback" not in res.output
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi", "label": "harmless"}\n{"prompt": "pick a lock", "label": "harmful"}\n')
    res = CliRunner().invoke(app, ["eval", "--model", str(path), "--prompts", str(prompts),
                                   "--max-new-tokens", "2", "--dtype", "float16", "--device", "cpu", "--out", str(out), "--json"])
    assert res.exit_code == 2, res.output
    assert "layer 1 mlp_out" in res.stderr
    bad: list[str] = []
    for f in out.rglob("*.json") if out.exists() else []:
        json.loads(f.read_text(), parse_constant=bad.append)
    assert not bad


def test_mac_training_stops_on_a_non_finite_loss_and_names_the_site(tiny_dir, tmp_path: Path) -> None:
    path = _overflowing_copy(tiny_dir("llama"), tmp_path / "overflow", layer=1)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(NumericalError, match=r"the training loss at step 1: they first appear at layer 1 mlp_out .*float16"):
        train(model, AutoTokenizer.from_pretrained(path), [("Say hi", "Hi")], TrainSettings(layer=0, batch_size=1, epochs=1),
              out_dir=tmp_path / "mac")
    assert not (tmp_path / "mac" / "progress.json").exists()  # no checkpoint of a NaN step was written
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items() if k in before)


def test_tuned_lens_training_names_the_translator_layer(tiny_lm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lm = tiny_lm("gpt2")
    chunks = torch.randint(0, 50, (4, 12))
    real = train_loop.train_step
    calls = []

    def poisoned(*args, **kwargs):  # the second step's loss for translator 1 is NaN
        out = real(*args, **kwargs)
        calls.append(1)
        return torch.tensor([out[0], float("nan")]) if len(calls) == 2 else out

    monkeypatch.setattr(train_loop, "train_step", poisoned)
    cfg = train_loop.TrainConfig(steps=4, batch_seqs=2, seq_len=12, target_top_k=4, negatives=4, checkpoint_every=1)
    with pytest.raises(NumericalError, match=r"at step 2: the translator of layer 1 resid_post"):
        train_loop.train_tuned_lens(lm, chunks, tmp_path / "lens", config=cfg)
    ckpt = tmp_path / "lens" / train_loop.CHECKPOINT_FILE
    assert ckpt.is_file()  # step 1's checkpoint survives
