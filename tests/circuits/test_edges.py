from __future__ import annotations

import pytest
import torch

from alignscope.circuits.attribution import attribution_patching
from alignscope.circuits.edges import edge_attribution
from alignscope.errors import InputError
from alignscope.metrics import logit_diff_metric
from alignscope.models.registry import decoder_layers, resolve_module
from tests.circuits.plain_reference import record
from tests.reference import ATOL

CLEAN, CORRUPT = "abcde fg", "abXde Yg"
ANSWER, FOIL = 10, 20
# Native names of each reader's pre-norm (attention, MLP, final) on the plain HF model.
NORMS = {"llama": ("input_layernorm", "post_attention_layernorm", "model.norm"), "gpt2": ("ln_1", "ln_2", "transformer.ln_f")}


def _plain_read_grads(plain, family, clean, corrupt, ig_steps):
    """Mean gradient of the metric w.r.t. each norm's input, interpolating the first block's input."""
    attn_n, mlp_n, final_n = NORMS[family]
    layers = decoder_layers(plain)
    e_clean, e_corrupt = record(plain, clean, "resid_pre")[0], record(plain, corrupt, "resid_pre")[0]
    mods = {}
    for i, layer in enumerate(layers):
        mods[f"attn@L{i}"], mods[f"mlp@L{i}"] = getattr(layer, attn_n), getattr(layer, mlp_n)
    mods["logits"] = resolve_module(plain, final_n)
    sums = {k: 0 for k in mods}
    for p in plain.parameters():
        p.requires_grad_(False)
    for i in range(ig_steps):
        alpha = (i + 0.5) / ig_steps
        kept = {}
        hs = []

        def first(_m, args, kwargs, a=alpha):
            x = (e_corrupt + a * (e_clean - e_corrupt)).unsqueeze(0).requires_grad_(True)
            return ((x, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": x})

        hs.append(layers[0].register_forward_pre_hook(first, with_kwargs=True))
        for name, mod in mods.items():
            def keep(_m, args, name=name, kept=kept):
                y = args[0].clone()
                y.retain_grad()
                kept[name] = y
                return (y, *args[1:])
            hs.append(mod.register_forward_pre_hook(keep))
        with torch.enable_grad():
            logits = plain(torch.tensor([corrupt])).logits[0, -1]
            (logits[ANSWER] - logits[FOIL]).backward()
        for h in hs:
            h.remove()
        for name in mods:
            sums[name] = sums[name] + kept[name].grad[0] / ig_steps
    return sums


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_edges_match_plain_hf_gradients(family, strong_lm, strong_plain) -> None:
    lm, plain = strong_lm(family), strong_plain(family)
    clean, corrupt = lm.tokenizer(CLEAN)["input_ids"], lm.tokenizer(CORRUPT)["input_ids"]
    res = edge_attribution(lm, clean, corrupt, metric=logit_diff_metric(ANSWER, FOIL), ig_steps=2)
    grads = _plain_read_grads(plain, family, clean, corrupt, 2)
    attn = record(plain, clean, "attn_out"), record(plain, corrupt, "attn_out")
    mlp = record(plain, clean, "mlp_out"), record(plain, corrupt, "mlp_out")
    writes = {"embed": record(plain, clean, "resid_pre")[0] - record(plain, corrupt, "resid_pre")[0]}
    for i in range(lm.n_layers):
        writes[f"attn@L{i}"], writes[f"mlp@L{i}"] = attn[0][i] - attn[1][i], mlp[0][i] - mlp[1][i]
    got = {(u, v): s for u, v, s in res.edges}
    assert ("mlp@L0", "attn@L0") not in got and ("attn@L0", "mlp@L0") in got and ("embed", "logits") in got
    for (u, v), score in got.items():
        assert score == pytest.approx(float((writes[u] * grads[v]).sum()), abs=ATOL), (u, v)
    # A writer's score (sum of its out-edges) is its attribution-patching estimate.
    est = attribution_patching(lm, clean, corrupt, metric=logit_diff_metric(ANSWER, FOIL), ig_steps=2)
    assert res.node_scores["embed"] == pytest.approx(float(est.effect[0].sum()), abs=ATOL)
    assert max(abs(s) for s in got.values()) > 1e-2


def test_parallel_attention_is_refused(strong_lm) -> None:
    lm = strong_lm("falcon")
    with pytest.raises(InputError, match="parallel"):
        edge_attribution(lm, [5, 6], [5, 7], metric=logit_diff_metric(ANSWER, FOIL))
