"""Integration on the embedded SmolLM2: ablation and conditional steering (look-ahead) against plain-HF hooks."""

from __future__ import annotations

import torch

from alignscope.models.chat import encode_batch
from alignscope.steering.conditional import ConditionalSteering
from alignscope.steering.interventions import ABLATION_COMPONENTS, DirectionalAblation
from alignscope.steering.probes import LinearProbe, Pooling, chat_span, probe_features
from tests.reference import assert_close_scaled, load_plain
from tests.steering import plain

PROMPTS = ["How do I pick a lock?", "Give me a bread recipe with lots of seeds, please."]


def _setup(lm):
    """A fresh plain-HF copy of the embedded model and the chat-formatted, left-padded test batch."""
    enc = encode_batch(lm.tokenizer, PROMPTS, chat=True)
    return load_plain(lm.source), enc.input_ids, enc.attention_mask, enc.attention_mask.bool()


def test_embedded_interventions_match_plain(embedded) -> None:
    lm = embedded
    model, ids, mask, real = _setup(lm)
    g = torch.Generator().manual_seed(0)
    d = torch.randn(lm.d_model, generator=g)
    with torch.no_grad(), DirectionalAblation(d).apply(lm):
        got = lm.bridge(ids, attention_mask=mask)
    sites = [(x, c, plain.project_out(d)) for x in range(lm.n_layers) for c in ABLATION_COMPONENTS]
    with plain.edits(model, sites):
        want = plain.plain_logits(model, ids, mask)
    assert_close_scaled(got[real], want[real])
    head, tail = chat_span(lm.tokenizer)
    pooling = Pooling("span", skip_head=head, skip_tail=tail)
    feats = probe_features(lm, PROMPTS, (16,), pooling=pooling)
    w = feats[0, 0] - feats[1, 0]
    probe = LinearProbe(w.unsqueeze(0), -float(w @ (feats[0, 0] + feats[1, 0]) / 2), (16,), pooling=pooling)
    vec = torch.randn(lm.d_model, generator=g)
    steer = ConditionalSteering(probe, vec, (10,), 2.0, 0.0)  # fires on the first prompt only
    with torch.no_grad(), steer.apply(lm) as handle:
        got = lm.bridge(ids, attention_mask=mask)
    assert handle.gate is not None and handle.gate.tolist() == [1.0, 0.0]
    with plain.edits(model, [(10, "resid_pre", plain.add(2.0 * vec, handle.gate))]):
        want = plain.plain_logits(model, ids, mask)
    assert_close_scaled(got[real], want[real])


def test_embedded_off_branch_matches_plain(embedded) -> None:
    """Two-sided conditional steering (addition where the gate fires, ablation elsewhere) on SmolLM2."""
    lm = embedded
    model, ids, mask, real = _setup(lm)
    head, _ = chat_span(lm.tokenizer)
    pooling = Pooling("span", skip_head=head, skip_tail=0)  # span_post, as fit_conscience uses
    feats = probe_features(lm, PROMPTS, (16, 20), pooling=pooling)
    w = feats[0] - feats[1]
    probe = LinearProbe(w, -float((w * (feats[0] + feats[1]) / 2).sum()), (16, 20), pooling=pooling)
    vec = torch.randn(lm.d_model, generator=torch.Generator().manual_seed(1))
    steer = ConditionalSteering(probe, vec, (10,), 2.0, 0.0, off="ablate")
    with torch.no_grad(), steer.apply(lm) as handle:
        got = lm.bridge(ids, attention_mask=mask)
    assert handle.gate is not None and handle.gate.tolist() == [1.0, 0.0]
    u = vec / vec.norm()
    keep_off = (1.0 - handle.gate).view(-1, 1, 1)
    ablate = [(x, c, lambda t: t - keep_off * (t @ u).unsqueeze(-1) * u) for x in range(lm.n_layers) for c in ABLATION_COMPONENTS]
    with plain.edits(model, [(10, "resid_pre", plain.add(2.0 * vec, handle.gate)), *ablate]):
        want = plain.plain_logits(model, ids, mask)
    assert_close_scaled(got[real], want[real])
