"""Forward passes on one hook target: the native twin's left-padded logits equal the bridge's and plain HF's."""

from __future__ import annotations

import torch

from alignscope.evals.capability import first_token_kl
from alignscope.evals.generation import generation_target
from alignscope.hooks.backends import BridgeTarget, NativeTarget
from alignscope.hooks.forward import next_token_logits
from alignscope.metrics import kl_divergence
from alignscope.models.batches import encode_prompts, pad_id, padded_batches
from alignscope.models.native import native_model
from alignscope.sites import Site
from tests.evals.standins import AddVector
from tests.reference import assert_close_scaled, load_plain

SEQS = [[10, 11, 12, 13, 14, 15], [20, 21], [30, 31, 32, 33], [40, 41, 42]]


def test_next_token_logits_same_on_every_target(family, tiny_lm, tiny_dir) -> None:
    lm = tiny_lm(family)
    plain = load_plain(tiny_dir(family))
    with torch.no_grad():
        want = torch.stack([plain(torch.tensor([s])).logits[0, -1] for s in SEQS])  # each prompt alone, unpadded
    batches = padded_batches(SEQS, 3, pad=3)
    targets = [BridgeTarget(lm)] + ([NativeTarget(twin)] if (twin := native_model(lm)) is not None else [])
    for target in targets:
        assert_close_scaled(next_token_logits(lm, target, batches), want)


def test_first_token_kl_runs_both_passes_on_one_target(tiny_lm, monkeypatch) -> None:
    lm = tiny_lm("llama")
    iv = AddVector(Site(1, "resid_post"), torch.randn(lm.d_model, generator=torch.Generator().manual_seed(0)))
    seen: list[str] = []
    original = NativeTarget.forward

    def spy(self: NativeTarget, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        seen.append(self.name)
        return original(self, ids, mask)

    def refuse(*_args: object) -> torch.Tensor:
        raise AssertionError("a pass ran on the bridge")

    monkeypatch.setattr(NativeTarget, "forward", spy)
    monkeypatch.setattr(BridgeTarget, "forward", refuse)
    assert generation_target(lm, iv).name == "native"
    kl = first_token_kl(lm, ["hello world", "hi there, how are you"], iv, batch_size=1)
    assert seen == ["native"] * 4  # two prompts, unsteered and steered
    # the same numbers as two bridge passes computed by hand
    monkeypatch.undo()
    batches = padded_batches(encode_prompts(lm.tokenizer, ["hello world", "hi there, how are you"], chat=True), 1, pad_id(lm.tokenizer))
    bridge = BridgeTarget(lm)
    base = next_token_logits(lm, bridge, batches)
    with iv.apply(lm, bridge):
        steered = next_token_logits(lm, bridge, batches)
    torch.testing.assert_close(kl, kl_divergence(base, steered), atol=1e-4, rtol=1e-3)
