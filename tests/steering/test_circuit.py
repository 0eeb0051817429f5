"""The alignment circuit against independent references: a per-token loop, plain HF hooks, full recompute."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from alignscope.errors import InputError
from alignscope.evals.capability import text_nlls
from alignscope.evals.loglik import scored_logliks
from alignscope.hooks.backends import NativeTarget
from alignscope.hooks.prompt_ends import current_prompt_ends, prompt_ends
from alignscope.io import read_safetensors, save_safetensors
from alignscope.models.chat import left_pad
from alignscope.models.native import native_model
from alignscope.models.registry import decoder_layers
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


def loop_reference(net: CircuitNet, h: torch.Tensor, real: torch.Tensor, hold_from: list[int] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Edited states and gates, one token at a time with Python lists (independent of the batched masks); with
    ``hold_from``, each row's tokens after that column take the gates computed at it."""
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
            if hold_from is not None and t > hold_from[b]:
                g = gates[b, hold_from[b]].clone()
            gates[b, t] = g
            out[b, t] = h[b, t].double() + rms[t] * (g @ net.nudge.double())
    return out, gates


@pytest.mark.parametrize("gate", ["sigmoid", "tanh"])
def test_net_equals_per_token_loop(gate: str) -> None:
    torch.manual_seed(0)
    net = trained_like(12, 0, gate=gate).net
    h = torch.randn(3, 6, 12) * 3
    real = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    edited, _scores, gates, _, _ = net(h, real)
    ref, ref_gates = loop_reference(net, h, real)
    torch.testing.assert_close(edited.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gates.double(), ref_gates, rtol=1e-5, atol=1e-5)


def test_cached_steps_equal_one_full_call() -> None:
    net = trained_like(12, 0).net
    h = torch.randn(2, 7, 12)
    real = torch.tensor([[0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    full, _, full_gates, _, _ = net(h, real)
    first, _, g1, past, _ = net(h[:, :4], real[:, :4])
    parts, gparts = [first], [g1]
    for t in range(4, 7):
        step, _, g, past, _ = net(h[:, t:t + 1], real[:, :t + 1], past)
        parts.append(step)
        gparts.append(g)
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(torch.cat(gparts, 1), full_gates, rtol=1e-6, atol=1e-6)


def test_edit_from_leaves_earlier_positions_exactly() -> None:
    net = trained_like(12, 0).net
    h = torch.randn(3, 6, 12)
    real = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1]], dtype=torch.bool)
    full, scores, gates, _, _ = net(h, real)
    part, pscores, pgates, _, _ = net(h, real, edit_from=torch.tensor([0, 3, 5]))
    for row, first in enumerate([0, 3, 5]):
        assert torch.equal(part[row, :first], h[row, :first])
        assert torch.equal(part[row, first:], full[row, first:])
    assert torch.equal(pscores, scores) and torch.equal(pgates, gates)  # the sensors and the decision still see every token
    first, _, _, past, _ = net(h[:, :4], real[:, :4], edit_from=torch.tensor([3, 3, 3]))
    step, _, _, _, _ = net(h[:, 4:], real, past, edit_from=torch.tensor([3, 3, 3]))
    assert torch.equal(first[:, :3], h[:, :3])
    torch.testing.assert_close(torch.cat([first[:, 3:], step], 1), full[:, 3:], rtol=1e-6, atol=1e-6)


def test_untrained_circuit_changes_nothing(tiny_lm) -> None:
    lm = tiny_lm("llama")
    ids, mask = left_pad(SEQS, 0)
    base = lm.bridge(ids, attention_mask=mask)
    circuit = AlignmentCircuit.new(lm.d_model, 1)
    with circuit.apply(lm):
        torch.testing.assert_close(lm.bridge(ids, attention_mask=mask), base, rtol=0, atol=0)


def _edit_reference(model: torch.nn.Module, circuit: AlignmentCircuit, ids: torch.Tensor, mask: torch.Tensor,
                    start: list[int] | None = None) -> torch.Tensor:
    """Logits of a plain HF model with the layer's output replaced by the per-token loop's edit (in each row from column
    ``start[row]`` on, when given, and with the gates held from there when the circuit holds them)."""

    def hook(_m, _i, out):
        h = out[0] if isinstance(out, tuple) else out
        new = loop_reference(circuit.net, h.detach(), mask.bool(), start if circuit.hold else None)[0].to(h.dtype)
        for row, first in enumerate(start or []):
            new[row, :first] = h[row, :first]
        return (new, *out[1:]) if isinstance(out, tuple) else new

    handle = decoder_layers(model)[circuit.layer].register_forward_hook(hook)
    try:
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    finally:
        handle.remove()


def _attached_logits(plain_model: torch.nn.Module, path: Path, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Logits of a plain HF model with the saved circuit attached by ``attach_to_hf`` (detached afterwards)."""
    handle = attach_to_hf(plain_model, path)
    try:
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            return plain_model(input_ids=ids, attention_mask=mask, position_ids=pos).logits  # type: ignore[no-any-return]
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
    plain_model = load_plain(tiny_dir(family))
    hf = _attached_logits(plain_model, save_intervention(tmp_path / "mac.safetensors", circuit, model=lm.name), ids, mask)
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
    path = save_intervention(tmp_path / "mac.safetensors", trained_like(lm.d_model, 0), model=lm.name)
    tensors, meta = read_safetensors(path, "x")
    save_safetensors(tmp_path / "bad.safetensors", {**tensors, "nudge": torch.zeros(2, 2)}, meta)
    with pytest.raises(InputError, match=r"bad.safetensors.*'nudge'.*shape"):
        load_intervention(tmp_path / "bad.safetensors")
    save_safetensors(tmp_path / "gate.safetensors", tensors, {**meta, "gate": "step"})
    with pytest.raises(InputError, match=r"gate.safetensors.*'gate'"):
        load_intervention(tmp_path / "gate.safetensors")


def test_response_scope_edits_the_prompts_last_token_on(family, tiny_lm, tiny_dir, tmp_path: Path) -> None:
    """A prompt pass under scope "response" nudges only each row's last real token, on every path; with the prompt's end
    declared (a teacher-forced pass), from that column on. Reference: plain HF with the per-token loop's edit."""
    lm = tiny_lm(family)
    circuit = replace(trained_like(lm.d_model, 0), scope="response")
    ids, mask = left_pad(SEQS, 0)
    real = mask.bool()
    last = [ids.shape[1] - 1] * len(SEQS)
    ref = _edit_reference(load_plain(tiny_dir(family)), circuit, ids, mask, last)
    with torch.no_grad(), circuit.apply(lm):
        torch.testing.assert_close(lm.bridge(ids, attention_mask=mask)[real], ref[real], rtol=1e-4, atol=1e-4)
    everywhere = _edit_reference(load_plain(tiny_dir(family)), circuit, ids, mask)
    assert (everywhere[real] - ref[real]).abs().max() > 1e-3  # the scopes differ on this model
    twin = native_model(lm)
    if twin is not None:
        target = NativeTarget(twin)
        with torch.no_grad(), circuit.apply(lm, target):
            torch.testing.assert_close(target.forward(ids, mask)[real], ref[real], rtol=1e-4, atol=1e-4)
    declared = [ids.shape[1] - 3, ids.shape[1] - 2, ids.shape[1] - 4]
    ref_declared = _edit_reference(load_plain(tiny_dir(family)), circuit, ids, mask, declared)
    with torch.no_grad(), circuit.apply(lm), prompt_ends(torch.tensor(declared)):
        torch.testing.assert_close(lm.bridge(ids, attention_mask=mask)[real], ref_declared[real], rtol=1e-4, atol=1e-4)
    hf = _attached_logits(load_plain(tiny_dir(family)), save_intervention(tmp_path / "mac.safetensors", circuit, model=lm.name),
                          ids, mask)
    torch.testing.assert_close(hf[real], ref[real], rtol=1e-4, atol=1e-4)


def test_response_scope_generation_equals_recompute_with_the_prompt_declared(tiny_lm) -> None:
    """KV-cached generation nudges the prompt's last token and every generated one: a no-cache loop that declares the
    prompt's end on each call gives the same tokens."""
    lm = tiny_lm("llama")
    circuit = replace(trained_like(lm.d_model, 0), scope="response")
    ids, mask = left_pad(SEQS, 0)
    with torch.no_grad(), circuit.apply(lm):
        out = lm.hf_model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False, pad_token_id=0)
    end = torch.full((len(SEQS),), ids.shape[1] - 1)
    seq, m = ids, mask
    for _ in range(5):
        with torch.no_grad(), circuit.apply(lm), prompt_ends(end):
            pos = (m.cumsum(-1) - 1).clamp(min=0)
            logits = lm.hf_model(input_ids=seq, attention_mask=m, position_ids=pos, use_cache=False).logits
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        seq, m = torch.cat([seq, nxt], 1), torch.cat([m, torch.ones_like(nxt)], 1)
    assert torch.equal(out, seq)


def test_response_scope_scores_continuations_from_the_contexts_end(tiny_lm, tiny_dir) -> None:
    """Log-likelihood scoring declares where each context ends: the continuation's log-probabilities equal plain HF's
    with the edit kept from the context's last token on."""
    lm = tiny_lm("llama")
    circuit = replace(trained_like(lm.d_model, 0), scope="response")
    pairs = [([10, 11, 12, 13], [14, 15]), ([20, 21], [22, 23, 24]), ([30, 31, 32], [33])]
    got = [ll for ll, _ in scored_logliks(lm, pairs, circuit, batch_size=3)]
    ids, mask = left_pad([[*c, *k] for c, k in pairs], 0)
    ref = _edit_reference(load_plain(tiny_dir("llama")), circuit, ids, mask, [ids.shape[1] - len(k) - 1 for _, k in pairs])
    for row, (_, k) in enumerate(pairs):
        logp = torch.log_softmax(ref[row, -len(k) - 1:-1].double(), -1)
        assert got[row] == pytest.approx(float(logp.gather(-1, torch.tensor(k)[:, None]).sum()), abs=1e-4)


def test_scope_round_trips_and_older_files_nudge_everything(tiny_lm, tmp_path: Path) -> None:
    lm = tiny_lm("llama")
    path = save_intervention(tmp_path / "mac.safetensors", replace(trained_like(lm.d_model, 0), scope="response"), model=lm.name)
    assert load_circuit(path).scope == "response"
    tensors, meta = read_safetensors(path, "x")
    save_safetensors(tmp_path / "old.safetensors", tensors, {k: v for k, v in meta.items() if k != "scope"})
    assert load_circuit(tmp_path / "old.safetensors").scope == "all"
    save_safetensors(tmp_path / "bad.safetensors", tensors, {**meta, "scope": "prompt"})
    with pytest.raises(InputError, match=r"bad.safetensors.*'scope'"):
        load_circuit(tmp_path / "bad.safetensors")
    with pytest.raises(InputError, match="scope"):
        AlignmentCircuit.new(lm.d_model, 0, scope="prompt")
    ids, mask = left_pad(SEQS, 0)
    with pytest.raises(InputError, match="prompt_ends"), load_circuit(path).apply(lm), prompt_ends(torch.tensor([1, 2])):
        lm.bridge(ids, attention_mask=mask)


def test_response_scope_perplexity_treats_the_text_as_response(tiny_lm, tiny_dir) -> None:
    """Perplexity's texts are all response: the edit is kept from each text's first token on."""
    lm = tiny_lm("llama")
    circuit = replace(trained_like(lm.d_model, 0), scope="response")
    texts = ["one two three four five", "six seven"]
    got = text_nlls(lm, texts, circuit, batch_size=2)
    seqs = [list(lm.tokenizer(t)["input_ids"]) for t in texts]
    ids, mask = left_pad(seqs, 0)
    ref = _edit_reference(load_plain(tiny_dir("llama")), circuit, ids, mask, [ids.shape[1] - len(s) for s in seqs])
    for row, s in enumerate(seqs):
        logp = torch.log_softmax(ref[row, -len(s):-1].double(), -1)
        assert got[row][0] == pytest.approx(-float(logp.gather(-1, torch.tensor(s[1:])[:, None]).sum()), abs=1e-4)


def test_prompt_ends_rejects_what_is_not_a_column_per_row() -> None:
    for bad in (torch.tensor([[1, 2]]), torch.tensor([1.0]), torch.tensor([-1]), torch.tensor([True])):
        with pytest.raises(ValueError, match="non-negative integer columns"), prompt_ends(bad):
            pass
    assert current_prompt_ends() is None
    with prompt_ends(torch.tensor([2])):
        assert current_prompt_ends().tolist() == [2]
    assert current_prompt_ends() is None


def test_load_start_copies_named_values_and_names_a_bad_one() -> None:
    net = CircuitNet(12, 3, 8)
    nudge_before = net.nudge.detach().clone()
    axes = torch.randn(3, 12)
    net.load_start({"axes": axes})
    assert torch.equal(net.axes, axes) and torch.equal(net.nudge, nudge_before)
    with pytest.raises(InputError, match=r"init\.axes.*shape \(2, 12\)"):
        net.load_start({"axes": torch.zeros(2, 12)})
    with pytest.raises(InputError, match=r"init\.gates"):
        net.load_start({"gates": torch.zeros(3)})


def test_held_gates_equal_the_loop_in_one_call_and_in_cached_steps() -> None:
    """With ``hold``, the tokens after each row's prompt end take its gates there: the batched net equals the per-token
    loop, and a prompt call then one-token calls (the held gates carried between them) equal one full call."""
    net = trained_like(12, 0).net
    h = torch.randn(3, 7, 12)
    real = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1]], dtype=torch.bool)
    ends = [2, 3, 4]
    full = net(h, real, edit_from=torch.tensor(ends), hold=True)
    ref, ref_gates = loop_reference(net, h, real, ends)
    for row, end in enumerate(ends):
        torch.testing.assert_close(full.edited[row, end:].double(), ref[row, end:], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(full.gates[row].double(), ref_gates[row], rtol=1e-5, atol=1e-5)
        assert torch.equal(full.held[row], full.gates[row, end])
    assert (full.gates - net(h, real).gates).abs().max() > 1e-3  # holding changes the gates on this net
    step = net(h[:, :5], real[:, :5], edit_from=torch.tensor(ends), hold=True)
    parts, past, held = [step.edited], step.past, step.held
    for t in range(5, 7):
        step = net(h[:, t:t + 1], real[:, :t + 1], past, torch.tensor(ends), hold=True, held=held)
        parts.append(step.edited)
        past, held = step.past, step.held
    torch.testing.assert_close(torch.cat(parts, 1), full.edited, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="edit_from"):
        net(h, real, hold=True)
    with pytest.raises(ValueError, match="not in this call"):
        net(h[:, 4:], real, net(h[:, :4], real[:, :4]).past, torch.tensor(ends), hold=True)  # row 0 ended in the past call


def test_held_gates_on_every_path_equal_plain_hf_with_the_loop(family, tiny_lm, tiny_dir, tmp_path: Path) -> None:
    """A teacher-forced pass with declared prompt ends, under ``hold``: the bridge, the native path and a plain HF model
    with the saved circuit attached all equal plain HF with the per-token loop's held edit."""
    lm = tiny_lm(family)
    circuit = replace(trained_like(lm.d_model, 0), scope="response", hold=True)
    ids, mask = left_pad(SEQS, 0)
    real = mask.bool()
    declared = [ids.shape[1] - 3, ids.shape[1] - 2, ids.shape[1] - 4]
    ref = _edit_reference(load_plain(tiny_dir(family)), circuit, ids, mask, declared)
    unheld = _edit_reference(load_plain(tiny_dir(family)), replace(circuit, hold=False), ids, mask, declared)
    assert (unheld[real] - ref[real]).abs().max() > 1e-3  # holding matters on this model
    with torch.no_grad(), circuit.apply(lm), prompt_ends(torch.tensor(declared)):
        torch.testing.assert_close(lm.bridge(ids, attention_mask=mask)[real], ref[real], rtol=1e-4, atol=1e-4)
    twin = native_model(lm)
    if twin is not None:
        target = NativeTarget(twin)
        with torch.no_grad(), circuit.apply(lm, target), prompt_ends(torch.tensor(declared)):
            torch.testing.assert_close(target.forward(ids, mask)[real], ref[real], rtol=1e-4, atol=1e-4)
    path = save_intervention(tmp_path / "mac.safetensors", circuit, model=lm.name)
    with prompt_ends(torch.tensor(declared)):
        hf = _attached_logits(load_plain(tiny_dir(family)), path, ids, mask)
    torch.testing.assert_close(hf[real], ref[real], rtol=1e-4, atol=1e-4)


def test_held_generation_equals_recompute_with_the_prompt_declared(tiny_lm) -> None:
    """KV-cached generation under ``hold`` keeps the prompt end's gates for every generated token: a no-cache loop that
    declares the prompt's end on each call gives the same tokens, and the recorded gates repeat the prompt end's."""
    lm = tiny_lm("llama")
    circuit = replace(trained_like(lm.d_model, 0), scope="response", hold=True)
    ids, mask = left_pad(SEQS, 0)
    with torch.no_grad(), circuit.apply(lm, record=True) as handle:
        out = lm.hf_model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False, pad_token_id=0)
        gates = handle.trace()["gates"]
    end = ids.shape[1] - 1
    assert torch.equal(gates[:, end + 1:], gates[:, end:end + 1].expand(-1, gates.shape[1] - end - 1, -1))
    seq, m = ids, mask
    for _ in range(5):
        with torch.no_grad(), circuit.apply(lm), prompt_ends(torch.full((len(SEQS),), end)):
            pos = (m.cumsum(-1) - 1).clamp(min=0)
            logits = lm.hf_model(input_ids=seq, attention_mask=m, position_ids=pos, use_cache=False).logits
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        seq, m = torch.cat([seq, nxt], 1), torch.cat([m, torch.ones_like(nxt)], 1)
    assert torch.equal(out, seq)


def test_hold_round_trips_needs_scope_response_and_older_files_do_not_hold(tiny_lm, tmp_path: Path) -> None:
    lm = tiny_lm("llama")
    path = save_intervention(tmp_path / "mac.safetensors", replace(trained_like(lm.d_model, 0), scope="response", hold=True),
                             model=lm.name)
    assert load_circuit(path).hold is True
    tensors, meta = read_safetensors(path, "x")
    save_safetensors(tmp_path / "old.safetensors", tensors, {k: v for k, v in meta.items() if k != "hold"})
    assert load_circuit(tmp_path / "old.safetensors").hold is False
    save_safetensors(tmp_path / "bad.safetensors", tensors, {**meta, "hold": '"yes"'})
    with pytest.raises(InputError, match=r"bad.safetensors.*'hold'.*true or false"):
        load_circuit(tmp_path / "bad.safetensors")
    save_safetensors(tmp_path / "all.safetensors", tensors, {**meta, "scope": "all"})
    with pytest.raises(InputError, match=r"all.safetensors.*'hold'.*scope 'response'"):
        load_circuit(tmp_path / "all.safetensors")
    with pytest.raises(InputError, match=r"'hold'.*scope 'response'"):
        AlignmentCircuit.new(lm.d_model, 0, hold=True)
