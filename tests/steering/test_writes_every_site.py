"""Every write (add, ablate, clamp, gate) at every residual-width site against plain HF with hand-written hooks.

``resid_mid`` is where the suite used to be blind: the bridge's hook there is an alias of the
MLP norm's input, so a returned tensor reached the MLP but not the residual stream. The plain
reference edits ``resid_mid`` without touching the residual directly (``a' = edit(pre + a) - pre``
on what attention adds), so it is independent of the library's in-place write.
"""

from __future__ import annotations

import pytest
import torch

from alignscope.errors import AlignscopeError
from alignscope.models.chat import left_pad
from alignscope.models.registry import get_arch
from alignscope.steering.conditional import ConditionalSteering
from alignscope.steering.interventions import ActivationAddition, DirectionalAblation, ProjectionClamp
from alignscope.steering.probes import LinearProbe, Pooling
from tests.reference import load_plain
from tests.steering import plain
from tests.steering.test_conditional import reference_gate

SEQS = [[10, 11, 12, 13, 14, 15, 16, 17], [20, 21, 22], [30, 31, 32, 33, 34], [40, 41, 42, 43]]
SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")


def vec(seed: int, d: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(d, generator=torch.Generator().manual_seed(seed)) * scale


def clamp_edit(d: torch.Tensor, value: float) -> plain.Edit:
    u = d / d.norm()
    return lambda x: x + (value - x @ u).unsqueeze(-1) * u


def gated(lm, model, ids, mask, component: str) -> tuple[ConditionalSteering, torch.Tensor]:
    """A gate on a resid_pre probe at layer 0 steering ``component`` at layer 1, firing on about half the rows."""
    probe = LinearProbe(vec(5, lm.d_model).unsqueeze(0), 0.0, (0,), pooling=Pooling("tail", n_read=2))
    draft = ConditionalSteering(probe, vec(6, lm.d_model, 3.0), (1,), 1.0, 0.0, component=component)
    with torch.no_grad(), draft.apply(lm) as handle:
        lm.bridge(ids, attention_mask=mask)
    assert handle.scores is not None
    s = handle.scores.sort().values
    steer = ConditionalSteering(probe, draft.vector, (1,), 1.0, float(s[1] + s[2]) / 2, component=component)
    gate = reference_gate(model, ids, mask, steer)
    assert 0 < gate.sum() < len(gate)
    return steer, gate


@pytest.mark.parametrize("component", SITES)
def test_every_write_matches_plain_hf(family, tiny_lm, tiny_dir, component) -> None:
    lm = tiny_lm(family)
    if component == "resid_mid" and get_arch(lm.model_type).parallel_attn:
        pytest.skip("parallel attention has no resid_mid (checked to raise in the test below)")
    model = load_plain(tiny_dir(family))
    ids, mask = left_pad(SEQS, 3)
    d, v = vec(1, lm.d_model), vec(2, lm.d_model, 3.0)
    steer, gate = gated(lm, model, ids, mask, component)
    cases = [
        (ActivationAddition(v, (0, 1), 1.5, component=component), [(x, component, plain.add(1.5 * v)) for x in (0, 1)]),
        (DirectionalAblation(d, components=(component,)), [(x, component, plain.project_out(d)) for x in range(lm.n_layers)]),
        (ProjectionClamp(d, (1,), 4.0, component=component), [(1, component, clamp_edit(d, 4.0))]),
        (steer, [(1, component, plain.add(steer.vector, gate))]),
    ]
    # 1e-5 is far above float32 noise here; an ablation of a random direction at a tiny model's mlp_out moves logits ~1e-4
    plain.check_cases(lm, model, ids, mask, cases, min_change=1e-5, label=f"at {component}")


def test_resid_mid_addition_equals_attn_out_addition(tiny_lm) -> None:
    """resid_mid = resid_pre + attn_out, so adding v at either gives the same run (the old fault: only the MLP saw it)."""
    lm = tiny_lm("llama")
    ids, mask = left_pad(SEQS, 3)
    v = vec(2, lm.d_model, 3.0)
    with torch.no_grad():
        with ActivationAddition(v, (0,), 1.0, component="resid_mid").apply(lm):
            mid = lm.bridge(ids, attention_mask=mask)
        with ActivationAddition(v, (0,), 1.0, component="attn_out").apply(lm):
            attn = lm.bridge(ids, attention_mask=mask)
    torch.testing.assert_close(mid, attn, atol=1e-4, rtol=1e-4)  # resid_mid + v == attn_out + v, exactly as the algebra says


@pytest.mark.parametrize("family", ["falcon"])
def test_resid_mid_on_parallel_attention_is_a_clear_error(family, tiny_lm) -> None:
    lm = tiny_lm(family)
    with pytest.raises(AlignscopeError, match="resid_mid"):
        ActivationAddition(vec(2, lm.d_model), (0,), 1.0, component="resid_mid").attach(lm)
