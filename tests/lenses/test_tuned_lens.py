from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from alignscope.errors import InputError, ResumeMismatchError
from alignscope.lenses.corpus import token_chunks
from alignscope.lenses.lens_eval import evaluate_lenses, kl_per_layer
from alignscope.lenses.train_loop import CHECKPOINT_FILE, TrainConfig, sampled_kl, step_seed, train_tuned_lens
from alignscope.lenses.tuned_lens import TunedLens, read_metadata
from alignscope.lenses.unembed import Unembedder

CORPUS = "\n\n".join(
    f"Document {i}: the {w} jumped over {n} lazy dogs while the farmer counted sheep and sang."
    for i, (w, n) in enumerate([("fox", "two"), ("cat", "three"), ("hen", "four"), ("cow", "nine"), ("owl", "six")] * 4)
)


def _chunks(lm) -> torch.Tensor:
    return token_chunks(lm.tokenizer, CORPUS, 24)


def test_exact_kl_formula_matches_plain_kl(tiny_lm) -> None:
    lm = tiny_lm("llama")
    ue = Unembedder.from_model(lm)
    g = torch.Generator().manual_seed(0)
    normed = ue.norm(torch.randn(1, 6, lm.d_model, generator=g)).expand(3, 6, lm.d_model) * torch.tensor([1.0, 0.5, 2.0]).view(3, 1, 1)
    target = torch.randn(6, lm.vocab_size, generator=g) * 3
    expected = kl_per_layer(ue.logits_from_normed(normed), target) / 6
    full = sampled_kl(normed, torch.log_softmax(target, -1), ue, TrainConfig(target_top_k=0, autocast=False), g)
    torch.testing.assert_close(full, expected, atol=1e-5, rtol=1e-5)
    # Top-k with every other token as a "negative" (weight 1): exact normaliser, tail KL terms left out.
    cfg = TrainConfig(target_top_k=4, negatives=10_000, autocast=False)
    part = sampled_kl(normed, torch.log_softmax(target, -1), ue, cfg, g)
    p = torch.log_softmax(target, -1)
    q = torch.log_softmax(ue.logits_from_normed(normed), -1)
    top = p.topk(4, dim=-1).indices.unique()
    by_hand = (p.exp()[:, top] * (p[:, top] - q[:, :, top])).sum(-1).mean(-1)
    torch.testing.assert_close(part, by_hand, atol=1e-5, rtol=1e-5)


def test_training_lowers_kl_and_roundtrips(sharp_lm, tiny_lm, tmp_path: Path) -> None:
    lm = sharp_lm
    chunks = _chunks(lm)
    before = evaluate_lenses(lm, chunks, TunedLens.for_model(lm))
    assert before.kl_tuned_lens == pytest.approx(before.kl_logit_lens, abs=1e-6)  # identity init
    cfg = TrainConfig(steps=12, batch_seqs=4, seq_len=24, lr=1e-2, target_top_k=0, checkpoint_every=0)
    lens, report = train_tuned_lens(lm, chunks, tmp_path / "run", config=cfg)
    after = evaluate_lenses(lm, chunks, lens)
    assert report.steps == 12 and report.tokens == 12 * 4 * 24
    assert before.kl_logit_lens[0] > 0.1
    assert after.ratio() < 0.5
    assert math.isclose(after.kl_tuned_lens[-1], 0.0, abs_tol=1e-6)  # the last layer is the output itself
    path = lens.save(tmp_path / "lens", model="tiny", extra={"note": "x"})
    meta = read_metadata(path)
    assert meta["model"] == "tiny" and meta["n_layers"] == str(lm.n_layers) and '"note": "x"' in meta["extra"]
    loaded = TunedLens.load(tmp_path / "lens", lm)
    assert torch.equal(loaded.weight, lens.weight) and torch.equal(loaded.bias, lens.bias)
    TunedLens(3, lm.d_model).save(tmp_path / "wrong", model="other")
    with pytest.raises(InputError, match="trained for 3 layers"):
        TunedLens.load(tmp_path / "wrong", lm)


def test_resume_continues_exactly(tiny_lm, tmp_path: Path) -> None:
    lm = tiny_lm("gpt2")
    chunks = _chunks(lm)
    cfg = TrainConfig(steps=6, batch_seqs=3, seq_len=24, lr=5e-3, target_top_k=8, negatives=16, checkpoint_every=2)
    straight, whole = train_tuned_lens(lm, chunks, tmp_path / "a", config=cfg)
    _, first = train_tuned_lens(lm, chunks, tmp_path / "b", config=cfg, max_steps=4)  # "killed" after 4 steps
    assert (tmp_path / "b" / CHECKPOINT_FILE).is_file() and first.steps == 4
    resumed, second = train_tuned_lens(lm, chunks, tmp_path / "b", config=cfg)
    assert second.resumed_from == 4 and second.steps == 6
    # the loss curve covers every step, the interrupted run's included (it once held the last 2 only)
    assert len(whole.losses) == 6 and second.losses[:4] == first.losses
    assert second.losses == whole.losses  # bit for bit: each step samples from its own seed, wherever a run resumed
    assert second.tokens == 2 * 3 * 24  # this call's tokens only
    assert torch.equal(resumed.weight, straight.weight) and torch.equal(resumed.bias, straight.bias)
    other = TrainConfig(steps=7, batch_seqs=3, seq_len=24, lr=5e-3, target_top_k=8, negatives=16, checkpoint_every=2)
    with pytest.raises(ResumeMismatchError):
        train_tuned_lens(lm, chunks, tmp_path / "b", config=other)


def test_resume_samples_the_same_negatives(tiny_lm, tmp_path: Path) -> None:
    """Few top tokens and few negatives, so each step's sampled vocabulary matters: a resumed run draws what an uninterrupted
    one draws (it once reseeded from the step it resumed at), so the lens is equal bit for bit."""
    lm = tiny_lm("gpt2")
    cfg = TrainConfig(steps=6, batch_seqs=1, seq_len=8, lr=5e-2, target_top_k=1, negatives=4, checkpoint_every=2)
    straight, whole = train_tuned_lens(lm, _chunks(lm), tmp_path / "a", config=cfg)
    train_tuned_lens(lm, _chunks(lm), tmp_path / "b", config=cfg, max_steps=3)  # checkpoint at step 2, "killed" at 3
    resumed, again = train_tuned_lens(lm, _chunks(lm), tmp_path / "b", config=cfg)
    assert again.resumed_from == 3 and again.losses == whole.losses
    assert torch.equal(resumed.weight, straight.weight) and torch.equal(resumed.bias, straight.bias)
    assert step_seed(0, 3) != step_seed(1, 3) and step_seed(0, 3) != step_seed(0, 4)


def test_a_checkpoint_whose_losses_do_not_match_its_step_names_the_file(tiny_lm, tmp_path: Path) -> None:
    lm = tiny_lm("gpt2")
    cfg = TrainConfig(steps=4, batch_seqs=2, seq_len=24, target_top_k=0, checkpoint_every=2)
    train_tuned_lens(lm, _chunks(lm), tmp_path / "run", config=cfg, max_steps=2)
    path = tmp_path / "run" / CHECKPOINT_FILE
    with safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata())
    assert json.loads(meta["losses"]) and len(json.loads(meta["losses"])) == 2
    save_file(load_file(str(path)), str(path), metadata={**meta, "losses": "[0.5]"})
    with pytest.raises(InputError, match=f"{path}.*1 losses for 2 steps"):
        train_tuned_lens(lm, _chunks(lm), tmp_path / "run", config=cfg)


def test_corpus_errors(tiny_lm) -> None:
    with pytest.raises(InputError, match="fewer than one chunk"):
        token_chunks(tiny_lm("llama").tokenizer, "short", 500)


def test_resume_follows_the_weights_not_the_name(tiny_lm, tiny_copy, tmp_path: Path) -> None:
    from alignscope.models.loader import load_model

    lm = tiny_lm("gpt2")
    chunks = _chunks(lm)
    cfg = TrainConfig(steps=4, batch_seqs=2, seq_len=24, target_top_k=0, checkpoint_every=2)
    train_tuned_lens(lm, chunks, tmp_path / "run", config=cfg, max_steps=2)
    with pytest.raises(ResumeMismatchError, match="tuned-lens checkpoint of different inputs"):
        train_tuned_lens(load_model(str(tiny_copy("gpt2", True)), device="cpu"), chunks, tmp_path / "run", config=cfg)
    _, report = train_tuned_lens(load_model(str(tiny_copy("gpt2")), device="cpu"), chunks, tmp_path / "run", config=cfg)
    assert report.resumed_from == 2 and report.steps == 4
