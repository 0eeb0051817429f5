"""The alignment circuit against independent references: a per-token loop, plain HF hooks, full recompute."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from alignscope.errors import InputError
from alignscope.hooks.backends import NativeTarget
from alignscope.models.chat import left_pad
from alignscope.models.native import native_model
from alignscope.steering.circuit import AlignmentCircuit, CircuitNet, attach_to_hf, load_circuit
from alignscope.steering.intervention_io import load_intervention, save_intervention
from tests.reference import load_plain

SEQS = [[10, 11, 12, 13, 14, 15, 16, 17], [20, 21, 22], [30, 31, 32, 33, 34]]


def trained_like(d_model: int, layer: int, seed: int = 3, gate: str = "sigmoid") -> AlignmentCircuit:
    """A circuit with random non-zero nudges and a gate bias near 0, so every part of the math matters."""
    circuit = AlignmentCircuit.new(d_model, layer, width=8, gate=gate, gate_bias=0.0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in circuit.net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.ndim > 1 else 0.3))
    return circuit


def loop_reference(net: CircuitNet, h: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Edited states and gates, one token at a time with Python lists (independent of the batched masks)."""
    out, gates = h.clone().double(), torch.zeros(h.shape[0], h.shape[1], net.n_axes, dtype=torch.float64)
    axes, bias = net.axes.double(), net.axis_bias.double()
    for b in range(h.shape[0]):
        rms = [math.sqrt(float(h[b, t].double().pow(2).mean()) + 1e-6) for t in range(h.shape[1])]
        hn = [h[b, t].double() / rms[t] for t in range(h.shape[1])]
        scores = [axes @ x + bias for x in hn]
        for t in range(h.shape[1]):
            keys = [j for j in range(t + 1) if bool(real[b, j]) or j == t]
            q = net.query.double() @ hn[t]
            logits = torch.stack([q @ (net.key.double() @ scores[j]) / math.sqrt(net.width) for j in keys])
            weights = torch.softmax(logits, 0)
            context = sum(w * scores[j] for w, j in zip(weights, keys, strict=True))
            z = net.decide.double() @ torch.cat([scores[t], context]) + net.decide_bias.double()
            g = torch.sigmoid(z) if net.gate == "sigmoid" else torch.tanh(z)
            gates[b, t] = g
            out[b, t] = h[b, t].double() + rms[t] * (g @ net.nudge.double())
    return out, gates


@pytest.mark.parametrize("gate", ["sigmoid", "tanh"])
def test_net_equals_per_token_loop(gate: str) -> None:
    torch.manual_seed(0)
    net = trained_like(12, 0, gate=gate).net
    h = torch.randn(3, 6, 12) * 3
    real = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    edited, _scores, gates, _ = net(h, real)
    ref, ref_gates = loop_reference(net, h, real)
    torch.testing.assert_close(edited.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gates.double(), ref_gates, rtol=1e-5, atol=1e-5)


def test_cached_steps_equal_one_full_call() -> None:
    net = trained_like(12, 0).net
    h = torch.randn(2, 7, 12)
    real = torch.tensor([[0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    full, _, full_gates, _ = net(h, real)
    first, _, g1, past = net(h[:, :4], real[:, :4])
    parts, gparts = [first], [g1]
    for t in range(4, 7):
        step, _, g, past = net(h[:, t:t + 1], real[:, :t + 1], past)
        parts.append(step)
        gparts.append(g)
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(torch.cat(gparts, 1), full_gates, rtol=1e-6, atol=1e-6)


def test_untrained_circuit_changes_nothing(tiny_lm) -> None:
    lm = tiny_lm("llama")
    ids, mask = left_pad(SEQS, 0)
    base = lm.bridge(ids, attention_mask=mask)
    circuit = AlignmentCircuit.new(lm.d_model, 1)
    with circuit.apply(lm):
        torch.testing.assert_close(lm.bridge(ids, attention_mask=mask), base, rtol=0, atol=0)


def _edit_reference(model: torch.nn.Module, circuit: AlignmentCircuit, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Logits of a plain HF model with the layer's output replaced by the per-token loop's edit."""
    from alignscope.models.registry import decoder_layers

    def hook(_m, _i, out):
        h = out[0] if isinstance(out, tuple) else out
        new = loop_reference(circuit.net, h.detach(), mask.bool())[0].to(h.dtype)
        return (new, *out[1:]) if isinstance(out, tuple) else new

    handle = decoder_layers(model)[circuit.layer].register_forward_hook(hook)
    try:
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    finally:
        handle.remove()


def test_bridge_native_and_plain_hf_agree_with_reference(family, tiny_lm, tiny_dir, tmp_path: Path) -> None:
    lm = tiny_lm(family)
    circuit = trained_like(lm.d_model, 1)
    ids, mask = left_pad(SEQS, 0)
    ref = _edit_reference(load_plain(tiny_dir(family)), circuit, ids, mask)
    real = mask.bool()
    with torch.no_grad(), circuit.apply(lm):
        bridge = lm.bridge(ids, attention_mask=mask)
    torch.testing.assert_close(bridge[real], ref[real], rtol=1e-4, atol=1e-4)
    twin = native_model(lm)
    if twin is not None:
        target = NativeTarget(twin)
        with torch.no_grad(), circuit.apply(lm, target):
            native = target.forward(ids, mask)
        torch.testing.assert_close(native[real], ref[real], rtol=1e-4, atol=1e-4)
    path = save_intervention(tmp_path / "mac.safetensors", circuit, model=lm.name)
    plain_model = load_plain(tiny_dir(family))
    handle = attach_to_hf(plain_model, path)
    try:
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            hf = plain_model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    finally:
        handle.remove()
    torch.testing.assert_close(hf[real], ref[real], rtol=1e-4, atol=1e-4)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in plain_model.modules())


def test_kv_cached_generation_equals_full_recompute(tiny_lm) -> None:
    lm = tiny_lm("llama")
    circuit = trained_like(lm.d_model, 1)
    ids, mask = left_pad(SEQS, 0)
    with torch.no_grad(), circuit.apply(lm, record=True) as handle:
        out = lm.hf_model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False, pad_token_id=0)
        recorded = handle.trace()
    seq, m = ids, mask
    for _ in range(5):  # greedy, no cache: every call re-runs the whole sequence (a new sequence for the circuit)
        with torch.no_grad(), circuit.apply(lm) as handle:
            pos = (m.cumsum(-1) - 1).clamp(min=0)
            logits = lm.hf_model(input_ids=seq, attention_mask=m, position_ids=pos, use_cache=False).logits
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        seq, m = torch.cat([seq, nxt], 1), torch.cat([m, torch.ones_like(nxt)], 1)
    assert torch.equal(out, seq)
    assert recorded["gates"].shape == (3, ids.shape[1] + 4, circuit.net.n_axes)  # prompt pass + 4 cached steps


def test_scope_is_reversible_and_trains_only_the_circuit(tiny_lm) -> None:
    lm = tiny_lm("llama")
    circuit = trained_like(lm.d_model, 0)
    ids, mask = left_pad(SEQS, 0)
    base = lm.bridge(ids, attention_mask=mask).detach()
    for p in lm.hf_model.parameters():
        p.requires_grad_(False)
    with circuit.apply(lm):
        loss = lm.bridge(ids, attention_mask=mask).logsumexp(-1).mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in circuit.net.parameters())
    assert all(p.grad is None for p in lm.hf_model.parameters())
    torch.testing.assert_close(lm.bridge(ids, attention_mask=mask), base, rtol=0, atol=0)


def test_save_load_round_trip(tiny_lm, tmp_path: Path) -> None:
    lm = tiny_lm("llama")
    circuit = trained_like(lm.d_model, 1, gate="tanh")
    path = save_intervention(tmp_path / "mac.safetensors", circuit, model=lm.name)
    again = load_intervention(path)
    assert isinstance(again, AlignmentCircuit)
    assert (again.layer, again.axis_names, again.net.gate, again.net.width) == (1, circuit.axis_names, "tanh", 8)
    for (name, p), (_, q) in zip(circuit.net.named_parameters(), again.net.named_parameters(), strict=True):
        assert torch.equal(p, q), name
    assert isinstance(load_circuit(path), AlignmentCircuit)


def test_wrong_d_model_names_both(tiny_lm) -> None:
    lm = tiny_lm("llama")
    circuit = AlignmentCircuit.new(lm.d_model + 3, 0)
    with pytest.raises(InputError, match=rf"d_model {lm.d_model + 3}.*d_model {lm.d_model}"):
        circuit.attach(lm)


def test_bad_settings_name_the_field(tiny_lm, tmp_path: Path) -> None:
    lm = tiny_lm("llama")
    with pytest.raises(InputError, match="axes"):
        AlignmentCircuit.new(lm.d_model, 0, axis_names=())
    with pytest.raises(InputError, match="gate"):
        AlignmentCircuit.new(lm.d_model, 0, gate="relu6")
    with pytest.raises(InputError, match="width"):
        AlignmentCircuit.new(lm.d_model, 0, width=0)
    with pytest.raises(Exception, match="layer"):
        AlignmentCircuit.new(lm.d_model, lm.n_layers + 5).attach(lm)
    add_path = tmp_path / "other.safetensors"
    from alignscope.steering.interventions import ActivationAddition
    save_intervention(add_path, ActivationAddition(torch.ones(lm.d_model), (0,)), model=lm.name)
    with pytest.raises(InputError, match="kind"):
        load_circuit(add_path)
    from alignscope.io import read_safetensors, save_safetensors
    path = save_intervention(tmp_path / "mac.safetensors", trained_like(lm.d_model, 0), model=lm.name)
    tensors, meta = read_safetensors(path, "x")
    save_safetensors(tmp_path / "bad.safetensors", {**tensors, "nudge": torch.zeros(2, 2)}, meta)
    with pytest.raises(InputError, match=r"bad.safetensors.*'nudge'.*shape"):
        load_intervention(tmp_path / "bad.safetensors")
    save_safetensors(tmp_path / "gate.safetensors", tensors, {**meta, "gate": "step"})
    with pytest.raises(InputError, match=r"gate.safetensors.*'gate'"):
        load_intervention(tmp_path / "gate.safetensors")
