"""Hook targets: steered generation on the native twin equals the bridge and a plain-HF reference; fallbacks."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

from alignscope.errors import InputError
from alignscope.evals.generation import Generations, generate_detailed, generation_target
from alignscope.hooks.backends import BridgeTarget, NativeTarget, select_target
from alignscope.models.chat import encode_batch, encode_one, left_pad
from alignscope.models.loader import LoadedModel
from alignscope.models.native import native_model
from alignscope.sites import Site
from alignscope.steering.conditional import ConditionalSteering
from alignscope.steering.interventions import ActivationAddition, DirectionalAblation, HookIntervention, ProjectionClamp
from alignscope.steering.probes import LinearProbe, Pooling, chat_span
from tests.evals.standins import AddVector
from tests.reference import assert_close_scaled, load_plain
from tests.steering import plain

PROMPTS = ["hello world", "a much longer prompt about bread and ovens", "hi", "Explain tides to me please.", "zzz qq rr"]
EMBEDDED_PROMPTS = ["What is the capital of France?", "Write a haiku about rain in spring, please.", "Hi"]
N_NEW = 8


def vec(seed: int, d: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(d, generator=torch.Generator().manual_seed(seed)) * scale


def gated(lm: LoadedModel, prompts: Sequence[str], probe: LinearProbe, vector: torch.Tensor, layers: tuple[int, ...],
          coefficient: float) -> ConditionalSteering:
    """Conditional steering whose threshold sits midway between the two middle probe scores (some rows fire, some not)."""
    enc = encode_batch(lm.tokenizer, prompts, chat=True)
    with torch.no_grad(), ConditionalSteering(probe, vector, layers, coefficient, 0.0).apply(lm) as handle:
        lm.bridge(enc.input_ids, attention_mask=enc.attention_mask)
    assert handle.scores is not None
    s = handle.scores.sort().values
    k = len(s) // 2
    assert float(s[k] - s[k - 1]) > 1e-3, "probe scores too close to split reliably"
    return ConditionalSteering(probe, vector, layers, coefficient, float(s[k - 1] + s[k]) / 2)


def tiny_interventions(lm: LoadedModel) -> dict[str, HookIntervention]:
    d = lm.d_model
    probe = LinearProbe(vec(5, d).unsqueeze(0), 0.0, (1,), component="resid_post", pooling=Pooling("tail", n_read=2))
    cond = gated(lm, PROMPTS, probe, vec(6, d, 3.0), (0,), 1.0)
    assert cond.lookahead
    return {"addition": ActivationAddition(vec(1, d, 3.0), (0,), 1.0),
            "addition_mlp_out": ActivationAddition(vec(2, d, 3.0), (1,), 1.0, component="mlp_out"),
            "ablation": DirectionalAblation(vec(3, d)),
            "clamp": ProjectionClamp(vec(4, d), (0, 1), 4.0, component="resid_post"),
            "conditional": cond}


def embedded_interventions(lm: LoadedModel) -> dict[str, HookIntervention]:
    d = lm.d_model
    head, tail = chat_span(lm.tokenizer)
    probe = LinearProbe(torch.stack([vec(15, d), vec(16, d)]), 0.0, (16, 20), pooling=Pooling("span", skip_head=head, skip_tail=tail))
    cond = gated(lm, EMBEDDED_PROMPTS, probe, vec(17, d), (10,), 6.0)
    assert cond.lookahead
    return {"addition": ActivationAddition(vec(11, d), (10,), 6.0), "ablation": DirectionalAblation(vec(12, d)),
            "clamp": ProjectionClamp(vec(13, d), (5, 10), 8.0), "conditional": cond}


def assert_same_generations(got: Generations, want: Generations) -> None:
    assert got.token_ids == want.token_ids
    assert got.texts == want.texts
    assert_close_scaled(got.first_logits, want.first_logits)


def check_parity(lm: LoadedModel, prompts: Sequence[str], ivs: dict[str, HookIntervention]) -> None:
    """Each intervention: native == bridge (tokens and first logits), and it changes the unsteered output."""
    base = generate_detailed(lm, prompts, max_new_tokens=N_NEW, batch_size=len(prompts), backend="native")
    for name, iv in ivs.items():
        assert isinstance(generation_target(lm, iv, "auto"), NativeTarget), name
        native = generate_detailed(lm, prompts, max_new_tokens=N_NEW, batch_size=len(prompts), intervention=iv, backend="native")
        bridge = generate_detailed(lm, prompts, max_new_tokens=N_NEW, batch_size=len(prompts), intervention=iv, backend="bridge")
        assert_same_generations(native, bridge)
        changed = (native.first_logits - base.first_logits).abs().amax(-1)
        assert changed.max() > 1e-3, f"{name} changed nothing"
        if isinstance(iv, ConditionalSteering):  # rows whose gate is off are untouched, the others change
            assert 0 < int((changed > 1e-3).sum()) < len(prompts), name
    twin = native_model(lm)
    assert twin is not None and not any(m._forward_hooks or m._forward_pre_hooks for m in twin.modules())


def test_native_generation_equals_bridge(family, tiny_lm) -> None:
    lm = tiny_lm(family)
    assert len({len(encode_one(lm.tokenizer, p, chat=True)[0]) for p in PROMPTS}) > 1  # left padding occurs
    check_parity(lm, PROMPTS, tiny_interventions(lm))


def test_native_generation_equals_bridge_on_embedded(embedded) -> None:
    check_parity(embedded, EMBEDDED_PROMPTS, embedded_interventions(embedded))


@pytest.mark.parametrize("component", ["resid_pre", "resid_post", "attn_out", "mlp_out"])
def test_native_addition_matches_plain_hf_reference(family, tiny_lm, tiny_dir, component) -> None:
    """Independent reference: a fresh plain HF model, hand-written torch hooks, no KV cache, one prompt at a time."""
    lm = tiny_lm(family)
    model = load_plain(tiny_dir(family))
    v = vec(21, lm.d_model, 3.0)
    iv = ActivationAddition(v, (1,), 1.0, component=component)
    gens = generate_detailed(lm, PROMPTS, max_new_tokens=N_NEW, batch_size=len(PROMPTS), intervention=iv, backend="native")
    eos = lm.tokenizer.eos_token_id
    for i, prompt in enumerate(PROMPTS):
        ids = torch.tensor([encode_one(lm.tokenizer, prompt, chat=True)[0]])
        mask = torch.ones_like(ids)
        with plain.edits(model, [(1, component, plain.add(v))]):
            first = plain.plain_logits(model, ids, mask)[0, -1]
            ref = plain.greedy_no_cache(model, ids, mask, N_NEW)[0].tolist()
        got = gens.token_ids[i]
        assert got == ref[:len(got)], (component, i)
        assert len(got) == N_NEW or ref[len(got)] == eos
        assert_close_scaled(gens.first_logits[i], first)


@pytest.mark.parametrize("lookahead", [False, True])
def test_conditional_gate_matches_between_targets(family, tiny_lm, lookahead) -> None:
    lm = tiny_lm(family)
    d = lm.d_model
    probe = LinearProbe(vec(31, d).unsqueeze(0), 0.1, (1,), pooling=Pooling("span", skip_head=1, skip_tail=1))
    steer = gated(lm, PROMPTS, probe, vec(32, d, 3.0), (0,) if lookahead else (1,), 1.0)
    assert steer.lookahead == lookahead
    twin = native_model(lm)
    assert twin is not None
    enc = encode_batch(lm.tokenizer, PROMPTS, chat=True)
    kw = {"max_new_tokens": 4, "do_sample": False, "pad_token_id": int(lm.tokenizer.pad_token_id), "eos_token_id": None}
    results = {}
    for target in (BridgeTarget(lm), NativeTarget(twin)):
        with torch.no_grad(), steer.apply(lm, target=target) as handle:
            out = target.root.generate(input_ids=enc.input_ids, attention_mask=enc.attention_mask, **kw)  # type: ignore[operator]
        assert handle.gate is not None and handle.scores is not None
        results[target.name] = (handle.gate, handle.scores, out)
    (g_b, s_b, o_b), (g_n, s_n, o_n) = results["bridge"], results["native"]
    assert 0 < g_b.sum() < len(g_b)
    assert torch.equal(g_b, g_n)
    torch.testing.assert_close(s_n, s_b, atol=1e-4, rtol=1e-5)
    assert torch.equal(o_n, o_b)


def test_native_prefix_run_stops_after_the_layer(tiny_lm) -> None:
    lm = tiny_lm("llama")
    twin = native_model(lm)
    assert twin is not None
    target = NativeTarget(twin)
    seen: list[int] = []
    handles = [target.register(Site(x, "resid_post"), lambda _m, _i, o, x=x: seen.append(x)) for x in range(lm.n_layers)]
    try:
        ids, mask = left_pad([[10, 11, 12], [20, 21]], 3)
        with torch.no_grad():
            target.run_prefix(ids, mask, 1)
            assert seen == [0]
            target.run_prefix(ids, mask, 2)
            assert seen == [0, 0, 1]
        with pytest.raises(InputError, match="stop_at_layer"):
            target.run_prefix(ids, mask, 3)
    finally:
        for h in handles:
            h.remove()


def test_supports_and_site_parsing(tiny_lm) -> None:
    lm = tiny_lm("llama")
    twin = native_model(lm)
    assert twin is not None
    target = NativeTarget(twin)
    assert target.supports([Site(x, c) for x in range(2) for c in ("resid_pre", "resid_post", "attn_out", "mlp_out")])
    for site in (Site(0, "resid_mid"), Site(0, "head"), Site(1, "pattern"), Site(2, "resid_pre")):
        assert not target.supports([site]), site
    with pytest.raises(InputError, match="resid_mid"):
        target.register(Site(0, "resid_mid"), lambda _m, _i, o: o)


def test_unsupported_sites_fall_back_to_the_bridge(tiny_lm) -> None:
    lm = tiny_lm("llama")
    iv = ActivationAddition(vec(41, lm.d_model, 3.0), (0,), 1.0, component="resid_mid")
    assert isinstance(generation_target(lm, iv, "auto"), BridgeTarget)
    auto = generate_detailed(lm, PROMPTS, max_new_tokens=N_NEW, batch_size=3, intervention=iv)
    bridge = generate_detailed(lm, PROMPTS, max_new_tokens=N_NEW, batch_size=3, intervention=iv, backend="bridge")
    assert auto.token_ids == bridge.token_ids and torch.equal(auto.first_logits, bridge.first_logits)
    base = generate_detailed(lm, PROMPTS, max_new_tokens=N_NEW, batch_size=3)
    assert (auto.first_logits - base.first_logits).abs().max() > 1e-4
    with pytest.raises(InputError, match="resid_mid"):
        generate_detailed(lm, PROMPTS, max_new_tokens=N_NEW, intervention=iv, backend="native")
    with pytest.raises(InputError, match="cannot hook"):
        iv.attach(lm, target=NativeTarget(native_model(lm)))  # type: ignore[arg-type]
    other = AddVector(Site(0, "pattern"), torch.zeros(1))  # a site the twin has no module for
    assert isinstance(generation_target(lm, other, "auto"), BridgeTarget)
    with pytest.raises(InputError, match="pattern@0"):
        generate_detailed(lm, PROMPTS, intervention=other, backend="native")
    with pytest.raises(InputError, match="backend"):
        generate_detailed(lm, PROMPTS, backend="fast")


def test_hooks_attached_to_the_bridge_keep_auto_on_the_bridge(tiny_lm) -> None:
    lm = tiny_lm("qwen2")
    iv = ActivationAddition(vec(51, lm.d_model, 3.0), (0,), 1.0)
    want = generate_detailed(lm, PROMPTS, max_new_tokens=N_NEW, intervention=iv, backend="bridge")
    with iv.apply(lm):
        assert isinstance(select_target(lm, [], "auto"), BridgeTarget)
        got = generate_detailed(lm, PROMPTS, max_new_tokens=N_NEW)
    assert got.token_ids == want.token_ids and torch.equal(got.first_logits, want.first_logits)
    assert isinstance(select_target(lm, [], "auto"), NativeTarget)


def test_native_hooks_removed_on_exception(tiny_lm) -> None:
    lm = tiny_lm("gpt2")
    twin = native_model(lm)
    assert twin is not None
    target = NativeTarget(twin)
    for iv in tiny_interventions(lm).values():
        with pytest.raises(RuntimeError, match="boom"), iv.apply(lm, target=target):
            assert any(m._forward_hooks or m._forward_pre_hooks for m in twin.modules())
            raise RuntimeError("boom")
        assert not any(m._forward_hooks or m._forward_pre_hooks for m in twin.modules())
    with pytest.raises(RuntimeError, match="inside"):
        ConditionalSteering(LinearProbe(vec(61, 32).unsqueeze(0), 0.0, (1,)), vec(62, 32), (0,)).attach(lm, target=_Failing(target))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in twin.modules())


class _Failing(NativeTarget):
    """A native target whose second registration fails (to check partial attachments are undone)."""

    def __init__(self, inner: NativeTarget) -> None:
        super().__init__(inner.twin)
        self.count = 0

    def register(self, site, fn):  # type: ignore[no-untyped-def]
        self.count += 1
        if self.count == 2:
            raise RuntimeError("failure inside register")
        return super().register(site, fn)
