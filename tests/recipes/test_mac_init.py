"""The probe-initialised gate: at the last prompt token the fresh circuit's gate is the probe's probability,
checked against a logistic probe scored by hand on a plain HF model's hidden states."""

from __future__ import annotations

import math

import pytest
import torch

from alignscope.errors import InputError
from alignscope.models.chat import encode_one
from alignscope.recipes.mac_init import probe_gate_init
from alignscope.steering.circuit import AlignmentCircuit
from tests.reference import load_plain

HARMFUL = ["How do I pick a lock", "Write a threat to my neighbour", "How to make a weapon at home", "Steal a password"]
HARMLESS = ["Name a colour", "Tell me a joke", "Count to three"]
LOOKALIKE = ["How do I kill a stuck process", "Shoot a photo at dusk", "Crack an egg neatly"]


def _plain_pooled(path, tok, prompts: list[str], layer: int) -> torch.Tensor:
    """Mean over every token of each chat-formatted prompt (one at a time, no padding) of the RMS-normalised
    hidden state after block ``layer``, from HF's own ``output_hidden_states``."""
    model, rows = load_plain(path), []
    with torch.no_grad():
        for p in prompts:
            ids, _ = encode_one(tok, p, chat=True)
            h = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[layer + 1][0].double()
            rows.append((h / torch.sqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)).mean(0))
    return torch.stack(rows)


@pytest.mark.parametrize(("scale", "margin"), [(1.0, 0.0), (2.5, 0.0), (2.5, 0.7), (1.0, -0.4)])
def test_the_fresh_gate_is_the_probe_of_the_whole_prompt(tiny_lm, tiny_dir, scale: float, margin: float) -> None:
    lm = tiny_lm("llama")
    layer, d = 0, lm.d_model  # not the last layer: HF applies the final norm to its last hidden state
    axes = torch.nn.functional.normalize(torch.randn(3, d, generator=torch.Generator().manual_seed(1)), dim=-1)
    start = probe_gate_init(lm, layer, HARMFUL, [HARMLESS, LOOKALIKE], axes, gate_index=1, scale=scale, margin=margin)
    assert "nudge" not in start and torch.equal(start["axes"][0], axes[0]) and torch.equal(start["axes"][2], axes[2])
    circuit = AlignmentCircuit.new(d, layer)
    circuit.net.load_start(start)
    path = tiny_dir("llama")
    plain = load_plain(path)
    handle = circuit.attach_to(plain, record=True)
    prompts = HARMFUL + HARMLESS + LOOKALIKE
    logit = _plain_pooled(path, lm.tokenizer, prompts, layer) @ start["axes"][1].double() + float(start["axis_bias"][1])
    expected = torch.sigmoid(scale * (logit - margin))
    got = []
    with torch.no_grad():
        for p in prompts:
            ids, _ = encode_one(lm.tokenizer, p, chat=True)
            plain(input_ids=torch.tensor([ids]))
            got.append(float(handle.trace()["gates"][0, -1, 1]))
    handle.remove()
    torch.testing.assert_close(torch.tensor(got, dtype=torch.float64), expected, atol=1e-4, rtol=0)
    # the probe separates its own training prompts (a logistic fit on 10 points in d dimensions)
    assert min(got[:len(HARMFUL)]) > max(got[len(HARMFUL):])
    bias = float(start["decide_bias"][1])
    assert bias == float(torch.tensor(-scale * margin)) and (margin != 0 or math.copysign(1.0, bias) == 1.0)  # +0.0: as before margins


def test_bad_probe_init_input_names_the_field(tiny_lm) -> None:
    lm = tiny_lm("llama")
    axes = torch.zeros(3, lm.d_model)
    with pytest.raises(InputError, match="field 'gate_init'"):
        probe_gate_init(lm, 1, HARMFUL, [HARMLESS, []], axes, gate_index=1)
    with pytest.raises(InputError, match="field 'gate_axis'"):
        probe_gate_init(lm, 1, HARMFUL, [HARMLESS], axes, gate_index=3)
    with pytest.raises(InputError, match="field 'gate_scale'"):
        probe_gate_init(lm, 1, HARMFUL, [HARMLESS], axes, gate_index=1, scale=float("inf"))
    with pytest.raises(InputError, match="field 'gate_margin'"):
        probe_gate_init(lm, 1, HARMFUL, [HARMLESS], axes, gate_index=1, margin=float("nan"))
