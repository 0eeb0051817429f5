from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from alignscope.activations import capture, load_capture, parse_positions
from alignscope.activations import store as store_mod
from alignscope.errors import InputError, ResumeMismatchError
from alignscope.models.chat import encode_one
from tests.reference import ATOL, RTOL, assert_close_scaled, hf_resid_post, load_plain

PROMPTS = ["hello world", "a much longer prompt about bread and ovens", "hi", "Explain tides to me please."]


def test_capture_matches_plain_hf_on_every_family(family, tiny_lm, tiny_dir) -> None:
    lm = tiny_lm(family)
    ref_model = load_plain(tiny_dir(family))
    res = capture(lm, PROMPTS, ["resid_post"], positions="-1,-2", chat=False, batch_size=3)
    acts = res["resid_post"]
    assert acts.shape == (len(PROMPTS), 2, lm.n_layers, lm.d_model)
    for i, text in enumerate(PROMPTS):
        ids = lm.tokenizer(text)["input_ids"]
        ref = hf_resid_post(ref_model, ids)  # (layers, seq, d)
        torch.testing.assert_close(acts[i, 0], ref[:, -1], atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(acts[i, 1], ref[:, -2], atol=ATOL, rtol=RTOL)


def test_batched_equals_unpadded_single_runs(tiny_lm) -> None:
    lm = tiny_lm("qwen2")
    comps = ["resid_pre", "resid_mid", "attn_out", "mlp_out", "head", "resid_post"]
    batched = capture(lm, PROMPTS, comps, chat=True, batch_size=4)
    for i, text in enumerate(PROMPTS):
        single = capture(lm, [text], comps, chat=True, batch_size=1)
        for comp in comps:
            torch.testing.assert_close(batched[comp][i], single[comp][0], atol=ATOL, rtol=RTOL)
    assert batched["head"].shape == (4, lm.n_layers, lm.n_heads, lm.d_head)


def test_all_positions_layout_with_offsets(tiny_lm) -> None:
    lm = tiny_lm("gpt2")
    res = capture(lm, PROMPTS, ["resid_post"], positions="all", chat=False, batch_size=2, layers=[1])
    lengths = [len(lm.tokenizer(t)["input_ids"]) for t in PROMPTS]
    assert res["resid_post"].shape == (sum(lengths), 1, lm.d_model)
    assert res["offsets"].tolist() == [0, *torch.tensor(lengths).cumsum(0).tolist()]
    ref = load_plain(lm.source)
    for i, text in enumerate(PROMPTS):
        rows = res["resid_post"][res["offsets"][i]:res["offsets"][i + 1], 0]
        torch.testing.assert_close(rows, hf_resid_post(ref, lm.tokenizer(text)["input_ids"])[1], atol=ATOL, rtol=RTOL)


def test_post_instruction_positions(tiny_lm) -> None:
    lm = tiny_lm("llama")
    ids, n_post = encode_one(lm.tokenizer, "hello", chat=True)
    text = lm.tokenizer.decode(ids[-n_post:])
    assert text == "</s><s>assistant:"
    res = capture(lm, ["hello", "bye now"], ["resid_post"], positions="post", chat=True)
    assert res["resid_post"].shape == (2, n_post, lm.n_layers, lm.d_model)
    assert res.index["offsets_from_end"] == list(range(-n_post, 0))


def test_pattern_is_right_aligned(tiny_lm) -> None:
    lm = tiny_lm("llama")
    res = capture(lm, ["ab", "abcdef"], ["pattern"], chat=False, layers=[0])
    pat = res["pattern"]  # (prompts, layers, heads, key_len)
    assert pat.shape[-1] == len(lm.tokenizer("abcdef")["input_ids"])
    torch.testing.assert_close(pat.sum(-1), torch.ones(pat.shape[:-1]), atol=1e-5, rtol=0)
    n_short = len(lm.tokenizer("ab")["input_ids"])
    assert torch.all(pat[0, ..., : pat.shape[-1] - n_short] == 0)


def test_raw_mode_tokenises_like_tokenizer(embedded) -> None:
    text = "The capital of France is"
    ids, n_post = encode_one(embedded.tokenizer, text, chat=False)
    assert ids == embedded.tokenizer(text)["input_ids"] and n_post == 1


def test_embedded_capture_matches_plain_hf(embedded) -> None:
    prompts = ["How do I bake bread?", "Tell me a joke about cats, please, it has been a long day.", "Hi!"]
    res = capture(embedded, prompts, ["resid_post"], positions="last", chat=True, batch_size=3)
    ref = load_plain(embedded.source)
    for i, p in enumerate(prompts):
        ids, _ = encode_one(embedded.tokenizer, p, chat=True)
        assert_close_scaled(res["resid_post"][i], hf_resid_post(ref, ids)[:, -1])


def test_store_roundtrip_and_resume(tiny_lm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lm = tiny_lm("mistral")
    prompts = [f"prompt number {i}" + "!" * i for i in range(7)]
    out = tmp_path / "cap"
    calls = {"n": 0}
    real = store_mod.capture_batch

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # simulate a kill after two finished batches
        return real(*args, **kwargs)

    monkeypatch.setattr(store_mod, "capture_batch", dying)
    with pytest.raises(KeyboardInterrupt):
        capture(lm, prompts, ["resid_post", "mlp_out"], chat=False, batch_size=2, out_dir=out)
    assert len(list((out / ".parts").glob("batch_*.safetensors"))) == 2
    calls["n"] = -100
    seen = []
    monkeypatch.setattr(store_mod, "capture_batch", lambda lm_, b, plan: seen.append(1) or real(lm_, b, plan))
    res = capture(lm, prompts, ["resid_post", "mlp_out"], chat=False, batch_size=2, out_dir=out)
    assert len(seen) == 2  # only the two unfinished batches ran
    assert not (out / ".parts").exists()
    memory = capture(lm, prompts, ["resid_post", "mlp_out"], chat=False, batch_size=2)
    on_disk = load_file(str(out / "activations.safetensors"))
    for comp in ("resid_post", "mlp_out"):
        assert torch.equal(on_disk[comp], memory[comp])
        assert torch.equal(res[comp], memory[comp])
    index = json.loads((out / "index.json").read_text())
    assert index["shapes"]["resid_post"] == [7, lm.n_layers, lm.d_model]
    assert index["tokens"][0][:3] == ["p", "r", "o"]
    assert load_capture(out).index["fingerprint"] == index["fingerprint"]
    # Rerun of a finished capture is a no-op; different inputs are refused.
    seen.clear()
    capture(lm, prompts, ["resid_post", "mlp_out"], chat=False, batch_size=2, out_dir=out)
    assert not seen
    with pytest.raises(ResumeMismatchError):
        capture(lm, prompts[:3], ["resid_post", "mlp_out"], chat=False, batch_size=2, out_dir=out)


def test_position_errors(tiny_lm) -> None:
    lm = tiny_lm("llama")
    with pytest.raises(InputError, match="counted from the end"):
        parse_positions("3")
    with pytest.raises(InputError, match="reaches before the start"):
        capture(lm, ["ab"], ["resid_post"], positions="-10", chat=False)
    with pytest.raises(InputError, match="patterns cannot be captured"):
        capture(lm, ["ab"], ["pattern"], positions="all", chat=False)


def test_resume_follows_the_weights_not_the_name(tiny_lm, tiny_copy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from alignscope.models.loader import load_model

    lm = tiny_lm("mistral")
    renamed = load_model(str(tiny_copy("mistral")), device="cpu")
    changed = load_model(str(tiny_copy("mistral", True)), device="cpu")
    prompts = ["one prompt", "two prompts here", "three"]
    real, seen = store_mod.capture_batch, []

    def dying(*args, **kwargs):
        if seen:
            raise KeyboardInterrupt  # killed after the first batch
        seen.append(1)
        return real(*args, **kwargs)

    out = tmp_path / "cap"
    monkeypatch.setattr(store_mod, "capture_batch", dying)
    with pytest.raises(KeyboardInterrupt):
        capture(lm, prompts, ["resid_post"], chat=False, batch_size=2, out_dir=out)
    with pytest.raises(ResumeMismatchError, match="unfinished capture of different inputs"):
        capture(changed, prompts, ["resid_post"], chat=False, batch_size=2, out_dir=out)
    monkeypatch.setattr(store_mod, "capture_batch", lambda *a: seen.append(2) or real(*a))
    res = capture(renamed, prompts, ["resid_post"], chat=False, batch_size=2, out_dir=out)
    assert seen == [1, 2]  # the renamed copy finished the run: only the second batch ran
    assert res.index["model"] == renamed.name and res.index["weights_sha256"] != ""
    assert torch.equal(res["resid_post"], capture(lm, prompts, ["resid_post"], chat=False, batch_size=2)["resid_post"])
    seen.clear()
    capture(lm, prompts, ["resid_post"], chat=False, batch_size=2, out_dir=out)  # finished: loaded, nothing runs
    assert not seen
    with pytest.raises(ResumeMismatchError, match="finished capture of different inputs"):
        capture(changed, prompts, ["resid_post"], chat=False, batch_size=2, out_dir=out)
