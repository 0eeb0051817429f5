"""Conditional steering against a plain-HF reference: gate from real tokens only, per-row, across KV-cache steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from alignscope.errors import InputError
from alignscope.models.chat import left_pad
from alignscope.steering.conditional import ConditionalSteering
from alignscope.steering.intervention_io import load_intervention, save_intervention
from alignscope.steering.interventions import ActivationAddition, DirectionalAblation
from alignscope.steering.probes import LinearProbe, Pooling
from tests.reference import assert_close_scaled, load_plain
from tests.steering import plain

SEQS = [[10, 11, 12, 13, 14, 15, 16, 17], [20, 21, 22], [30, 31, 32, 33, 34], [40, 41, 42, 43]]


def ref_pool(act: torch.Tensor, lengths: list[int], pooling: Pooling) -> torch.Tensor:
    """Pooled features by plain indexing of each row's real tokens (independent of the library's masks)."""
    rows = []
    seq = act.shape[1]
    for i, n in enumerate(lengths):
        real = act[i, seq - n:]
        part = real[-pooling.n_read:] if pooling.kind == "tail" else real[pooling.skip_head:n - pooling.skip_tail]
        rows.append(part.mean(0))
    return torch.stack(rows)


def reference_gate(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, steer: ConditionalSteering) -> torch.Tensor:
    p = steer.probe
    lengths = [int(x) for x in mask.sum(1)]
    feats = torch.stack([ref_pool(plain.capture(model, ids, mask, layer, p.component), lengths, p.pooling) for layer in p.layers], 1)
    return (torch.einsum("nkd,kd->n", feats, p.weight) + p.bias > steer.threshold).float()


def make_steer(d: int, probe_layers: tuple[int, ...], steer_layers: tuple[int, ...], pooling: Pooling,
               ids: torch.Tensor, mask: torch.Tensor, model: torch.nn.Module) -> ConditionalSteering:
    """A probe with random weights and a threshold at the median score, so some rows fire and some do not."""
    g = torch.Generator().manual_seed(7)
    probe = LinearProbe(torch.randn(len(probe_layers), d, generator=g), 0.0, probe_layers, pooling=pooling)
    vector = torch.randn(d, generator=g)
    draft = ConditionalSteering(probe, vector, steer_layers, 3.0, 0.0)
    lengths = [int(x) for x in mask.sum(1)]
    feats = torch.stack([ref_pool(plain.capture(model, ids, mask, x, "resid_pre"), lengths, pooling) for x in probe_layers], 1)
    scores = torch.einsum("nkd,kd->n", feats, probe.weight)
    threshold = float(scores.sort().values[len(scores) // 2 - 1]) + 1e-4  # half the rows fire
    return ConditionalSteering(probe, draft.vector, steer_layers, 3.0, threshold)


CONFIGS = [((0,), (1,), Pooling("tail", n_read=2)), ((1,), (0, 1), Pooling("span", skip_head=1, skip_tail=1))]


def test_logits_match_reference(family, tiny_lm, tiny_dir) -> None:
    lm = tiny_lm(family)
    model = load_plain(tiny_dir(family))
    ids, mask = left_pad(SEQS, 3)
    real = mask.bool()
    with torch.no_grad():
        before = lm.bridge(ids, attention_mask=mask)
    for probe_layers, steer_layers, pooling in CONFIGS:
        steer = make_steer(lm.d_model, probe_layers, steer_layers, pooling, ids, mask, model)
        gate = reference_gate(model, ids, mask, steer)
        assert 0 < gate.sum() < len(gate)
        with torch.no_grad(), steer.apply(lm) as handle:
            got = lm.bridge(ids, attention_mask=mask)
        assert handle.gate is not None and torch.equal(handle.gate, gate)
        sites = [(x, "resid_pre", plain.add(3.0 * steer.vector, gate)) for x in steer_layers]
        with plain.edits(model, sites):
            want = plain.plain_logits(model, ids, mask)
        assert_close_scaled(got[real], want[real])
        with torch.no_grad():
            assert torch.equal(lm.bridge(ids, attention_mask=mask), before)


@pytest.mark.parametrize("config", CONFIGS, ids=["same-pass", "lookahead"])
def test_generate_matches_manual_loop_and_resets(config, tiny_lm, tiny_dir) -> None:
    lm = tiny_lm("llama")
    model = load_plain(tiny_dir("llama"))
    ids, mask = left_pad(SEQS, 3)
    steer = make_steer(lm.d_model, *config, ids, mask, model)
    assert steer.lookahead == (config[1][0] < config[0][-1])
    gate = reference_gate(model, ids, mask, steer)
    kw = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 3, "eos_token_id": None}
    with torch.no_grad(), steer.apply(lm) as handle:
        out = lm.hf_model.generate(input_ids=ids, attention_mask=mask, **kw)
        first_gate = handle.gate
        # a second call on a sub-batch recomputes the gate from its own prompts
        out2 = lm.hf_model.generate(input_ids=ids[1:3], attention_mask=mask[1:3], **kw)
        assert handle.gate is not None and torch.equal(handle.gate, gate[1:3])
    assert first_gate is not None and torch.equal(first_gate, gate)
    with plain.edits(model, [(x, "resid_pre", plain.add(3.0 * steer.vector, gate)) for x in steer.layers]):
        want = plain.greedy_no_cache(model, ids, mask, 6)
    assert torch.equal(out[:, ids.shape[1]:], want)
    assert torch.equal(out2[:, ids.shape[1]:], want[1:3])


def test_padding_does_not_change_the_gate(tiny_lm) -> None:
    lm = tiny_lm("qwen2")
    g = torch.Generator().manual_seed(3)
    probe = LinearProbe(torch.randn(1, 32, generator=g), 0.1, (1,), pooling=Pooling("span", skip_head=0, skip_tail=1))
    steer = ConditionalSteering(probe, torch.randn(32, generator=g), (1,), 1.0, 0.0)
    ids, mask = left_pad(SEQS, 3)
    with torch.no_grad(), steer.apply(lm) as handle:
        lm.bridge(ids, attention_mask=mask)
        batched = handle.scores
        alone = []
        for seq in SEQS:
            lm.bridge(torch.tensor([seq]))
            assert handle.scores is not None
            alone.append(handle.scores[0])
    assert batched is not None
    torch.testing.assert_close(batched, torch.stack(alone), atol=1e-4, rtol=1e-5)


def test_roundtrip_and_errors(tiny_lm, tmp_path: Path) -> None:
    lm = tiny_lm("llama")
    pooling = Pooling("span", skip_head=1, skip_tail=2)
    probe = LinearProbe(torch.randn(2, 32), 0.5, (0, 1), pooling=pooling)
    steer = ConditionalSteering(probe, torch.randn(32), (0,), 2.0, -0.25)
    back = load_intervention(save_intervention(tmp_path, steer, model="tiny"))
    assert isinstance(back, ConditionalSteering)
    assert back.probe.pooling == pooling and back.threshold == -0.25 and back.coefficient == 2.0
    assert torch.equal(back.probe.weight, probe.weight) and back.probe.bias == 0.5 and back.layers == (0,)
    ids, mask = left_pad(SEQS, 3)
    with torch.no_grad(), steer.apply(lm):
        a = lm.bridge(ids, attention_mask=mask)
    with torch.no_grad(), back.apply(lm):
        b = lm.bridge(ids, attention_mask=mask)
    assert torch.equal(a, b)
    with pytest.raises(InputError, match="d_model is 32"):
        ConditionalSteering(probe, torch.randn(5), (0,)).attach(lm)
    with pytest.raises(InputError, match="pooling"):
        Pooling("middle")


def project_out_rows(d: torch.Tensor, rows: torch.Tensor) -> plain.Edit:
    """``x - (x . u) u`` only on rows where ``rows`` is 1."""
    u = d / d.norm()
    return lambda x: x - rows.view(-1, 1, 1).to(x.dtype) * (x @ u).unsqueeze(-1) * u


def off_branch_sites(steer: ConditionalSteering, gate: torch.Tensor, n_layers: int) -> list[tuple[int, str, plain.Edit]]:
    """Reference edits of ``off='ablate'``: addition on gated rows, ablation on every other row at every layer."""
    comps = ("resid_pre", "attn_out", "mlp_out")
    ablate = [(x, c, project_out_rows(steer.vector, 1.0 - gate)) for x in range(n_layers) for c in comps]
    return [(x, "resid_pre", plain.add(3.0 * steer.vector, gate)) for x in steer.layers] + ablate


def test_off_branch_ablation_matches_reference(family, tiny_lm, tiny_dir) -> None:
    lm = tiny_lm(family)
    model = load_plain(tiny_dir(family))
    ids, mask = left_pad(SEQS, 3)
    real = mask.bool()
    # probe and steering at layer 1: no look-ahead without the off branch
    base = make_steer(lm.d_model, (1,), (1,), Pooling("tail", n_read=2), ids, mask, model)
    steer = ConditionalSteering(base.probe, base.vector, base.layers, 3.0, base.threshold, off="ablate")
    assert not base.lookahead and steer.lookahead  # ablation from layer 0 needs the gate first
    gate = reference_gate(model, ids, mask, steer)
    assert 0 < gate.sum() < len(gate)
    with torch.no_grad(), steer.apply(lm) as handle:
        got = lm.bridge(ids, attention_mask=mask)
    assert handle.gate is not None and torch.equal(handle.gate, gate)
    with plain.edits(model, off_branch_sites(steer, gate, lm.n_layers)):
        want = plain.plain_logits(model, ids, mask)
    assert_close_scaled(got[real], want[real])
    with plain.edits(model, [(x, "resid_pre", plain.add(3.0 * steer.vector, gate)) for x in steer.layers]):
        without_off = plain.plain_logits(model, ids, mask)
    assert (without_off[real] - want[real]).abs().max() > 1e-3  # the off branch really edits the ungated rows


@pytest.mark.parametrize("backend", ["bridge", "native"])
def test_off_branch_generate_and_roundtrip(backend, tiny_lm, tiny_dir, tmp_path: Path) -> None:
    from alignscope.evals.generation import generation_target

    lm = tiny_lm("llama")
    model = load_plain(tiny_dir("llama"))
    ids, mask = left_pad(SEQS, 3)
    base = make_steer(lm.d_model, *CONFIGS[1], ids, mask, model)
    steer = ConditionalSteering(base.probe, base.vector, base.layers, 3.0, base.threshold, off="ablate")
    back = load_intervention(save_intervention(tmp_path, steer, model="tiny"))
    assert isinstance(back, ConditionalSteering) and back.off == "ablate"
    gate = reference_gate(model, ids, mask, steer)
    kw = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 3, "eos_token_id": None}
    target = generation_target(lm, back, backend)
    assert target.name == backend
    with torch.no_grad(), back.apply(lm, target) as handle:
        out = target.root.generate(input_ids=ids, attention_mask=mask, **kw)  # type: ignore[operator]
    assert handle.gate is not None and torch.equal(handle.gate, gate)
    with plain.edits(model, off_branch_sites(steer, gate, lm.n_layers)):
        want = plain.greedy_no_cache(model, ids, mask, 6)
    assert torch.equal(out[:, ids.shape[1]:], want)
    with pytest.raises(InputError, match="off"):
        ConditionalSteering(base.probe, base.vector, base.layers, off="subtract")


def test_gate_scores_equal_the_hooks_gate(tiny_lm) -> None:
    """gate_scores (offline features) gives the gate the hooks compute inside a chat-formatted forward pass."""
    from alignscope.models.chat import encode_batch
    from alignscope.steering.conditional import gate_scores

    lm = tiny_lm("qwen2")
    prompts = ["bake bread today", "how do I hurt them", "plan a trip to Rome please", "ok"]
    g = torch.Generator().manual_seed(5)
    probe = LinearProbe(torch.randn(2, lm.d_model, generator=g), 0.0, (0, 1), pooling=Pooling("span", skip_head=1, skip_tail=0))
    scores, _ = gate_scores(lm, ConditionalSteering(probe, torch.randn(lm.d_model, generator=g), (0,), 1.0, 0.0), prompts)
    threshold = float(scores.median())
    steer = ConditionalSteering(probe, torch.randn(lm.d_model, generator=g), (0,), 1.0, threshold, off="ablate")
    scores, fired = gate_scores(lm, steer, prompts)
    enc = encode_batch(lm.tokenizer, prompts, chat=True)
    with torch.no_grad(), steer.apply(lm) as handle:
        lm.bridge(enc.input_ids, attention_mask=enc.attention_mask)
    assert handle.scores is not None and handle.gate is not None
    torch.testing.assert_close(scores, handle.scores, atol=1e-4, rtol=1e-5)
    assert torch.equal(fired, handle.gate) and 0 < fired.sum() < len(prompts)


def test_composed_of_addition_and_ablation_bit_for_bit(tiny_lm) -> None:
    """Gate on everywhere: exactly the ActivationAddition; gate off everywhere with ablate: exactly the DirectionalAblation."""
    lm = tiny_lm("llama")
    ids, mask = left_pad(SEQS, 3)
    g = torch.Generator().manual_seed(3)
    vector = torch.randn(lm.d_model, generator=g)
    probe = LinearProbe(torch.randn(1, lm.d_model, generator=g), 0.0, (1,), pooling=Pooling("tail", n_read=2))

    def run(iv: object) -> torch.Tensor:
        with torch.no_grad(), iv.apply(lm):  # type: ignore[attr-defined]
            return lm.bridge(ids, attention_mask=mask)

    always = ConditionalSteering(probe, vector, (0, 1), 2.0, threshold=-1e9, off="ablate")
    never = ConditionalSteering(probe, vector, (0, 1), 2.0, threshold=1e9, off="ablate")
    assert torch.equal(run(always), run(ActivationAddition(vector, (0, 1), 2.0)))
    assert torch.equal(run(never), run(DirectionalAblation(vector)))
    assert always.addition.layers == (0, 1) and never.off_branch is not None
