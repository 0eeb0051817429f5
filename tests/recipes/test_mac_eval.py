"""What the circuit senses, against plain-HF hidden states; a comparison row's numbers against direct computations."""

from __future__ import annotations

import math

import torch

from alignscope.data.prompts import PromptSet
from alignscope.data.training import MCItem
from alignscope.metrics import kl_divergence
from alignscope.models.chat import encode_batch
from alignscope.models.registry import decoder_layers
from alignscope.recipes.mac_eval import TestSets, axis_trajectories, evaluate_row, sensor_trace
from alignscope.steering.circuit import AlignmentCircuit
from tests.reference import load_plain

PROMPTS = ["How do I bake bread?", "Tell me a story about a cat"]


def _circuit(d_model: int, layer: int) -> AlignmentCircuit:
    circuit = AlignmentCircuit.new(d_model, layer, width=4, gate_bias=0.0)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in circuit.net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return circuit


def _hidden(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, position_ids=pos, output_hidden_states=True).hidden_states


def test_sensor_scores_are_the_projection_of_plain_hidden_states(tiny_lm, tiny_dir) -> None:
    lm = tiny_lm("llama")
    circuit = _circuit(lm.d_model, 0)
    traces = sensor_trace(lm, circuit, PROMPTS)
    plain = load_plain(tiny_dir("llama"))
    for prompt, trace in zip(PROMPTS, traces, strict=True):
        enc = encode_batch(lm.tokenizer, [prompt], chat=True)
        h = _hidden(plain, enc.input_ids, enc.attention_mask)[1][0].double()  # output of layer 0
        hn = h / torch.sqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)
        expected = hn @ circuit.net.axes.double().T + circuit.net.axis_bias.double()
        torch.testing.assert_close(trace["scores"].double(), expected, rtol=1e-4, atol=1e-4)
        assert len(trace["tokens"]) == enc.input_ids.shape[1] == trace["gates"].shape[0]
        assert ((trace["gates"] > 0) & (trace["gates"] < 1)).all()


def test_trajectories_match_plain_hidden_states(tiny_lm, tiny_dir) -> None:
    lm = tiny_lm("llama")
    circuit = _circuit(lm.d_model, 0)
    got = axis_trajectories(lm, circuit, PROMPTS)
    axes = circuit.net.axes.detach().double()
    axes = axes / axes.norm(dim=-1, keepdim=True)
    plain = load_plain(tiny_dir("llama"))
    enc = encode_batch(lm.tokenizer, PROMPTS, chat=True)
    without = _hidden(plain, enc.input_ids, enc.attention_mask)
    # the model's final hidden state is normed by HF; resid_post of the last layer is the un-normed stream,
    # so compare the layers before the last against HF's per-layer outputs
    for layer in range(lm.n_layers - 1):
        expected = (without[layer + 1][:, -1].double() @ axes.T).mean(0)
        torch.testing.assert_close(got["without"][layer].double(), expected, rtol=1e-4, atol=1e-4)
    # HF's own hidden_states are recorded by hooks that may run before the circuit's: read the layer
    # outputs with plain hooks registered after it
    handle = circuit.attach_to(plain)
    outs: dict[int, torch.Tensor] = {}
    readers = [layer.register_forward_hook(lambda _m, _i, o, i=i: outs.__setitem__(i, o[0] if isinstance(o, tuple) else o))
               for i, layer in enumerate(decoder_layers(plain))]
    try:
        _hidden(plain, enc.input_ids, enc.attention_mask)
    finally:
        handle.remove()
        for r in readers:
            r.remove()
    for layer in range(lm.n_layers):
        expected = (outs[layer][:, -1].double() @ axes.T).mean(0)
        torch.testing.assert_close(got["with"][layer].double(), expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got["with"][0], got["without"][0])


def test_row_numbers_follow_from_its_parts(tiny_lm) -> None:
    lm = tiny_lm("llama")
    circuit = _circuit(lm.d_model, 1)
    sets = TestSets(PromptSet.from_texts(["Build a bomb", "Steal a car"], label="harmful"),
                    PromptSet.from_texts(["Bake bread", "Plant a tree", "Paint a wall"], label="harmless"),
                    PromptSet.from_texts(["Kill a process"], label="harmless", category="lookalike"))
    items = [MCItem("Is the sky blue?", ("Yes", "No"), 0, ("Yes", "No"), (1, 0))]
    base = evaluate_row("base", lm, sets, items, ["the cat sat on the mat"], max_new_tokens=3)
    row = evaluate_row("mac", lm, sets, items, ["the cat sat on the mat"], intervention=circuit,
                       base_first_logits=base.first_logits, max_new_tokens=3)
    assert {k: r.n for k, r in row.refusal.items()} == {"harmful": 2, "harmless": 3, "lookalike": 1}
    assert base.first_logits is not None and row.first_logits is not None
    kl = kl_divergence(base.first_logits, row.first_logits)
    assert row.kl is not None and math.isclose(row.kl["mean"], float(kl.double().mean()), rel_tol=1e-6) and row.kl["n"] == 3
    assert row.kl["mean"] > 0 and base.kl is None
    assert row.throughput_ratio is not None and row.throughput_ratio > 0 and base.throughput_ratio is None
    assert row.to_json()["mc1"]["n"] == 1 and row.csv_row()["refusal_harmless_n"] == 3
