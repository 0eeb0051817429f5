from __future__ import annotations

import pytest
import torch

from alignscope.evals.generation import generate, generate_detailed
from alignscope.models.chat import encode_one
from alignscope.models.registry import decoder_layers
from alignscope.sites import Site
from tests.evals.standins import AddVector
from tests.reference import load_plain

PROMPTS = ["hello world", "a much longer prompt about bread and ovens", "hi", "Explain tides to me please."]


def manual_greedy(model: torch.nn.Module, ids: list[int], n: int, eos: int, layer: int | None = None,
                  vector: torch.Tensor | None = None) -> tuple[list[int], torch.Tensor]:
    """Greedy decoding without KV cache: re-run the whole sequence for every token (plain HF)."""
    handle = None
    if vector is not None:
        def hook(_m, _i, o):
            return (o[0] + vector, *o[1:]) if isinstance(o, tuple) else o + vector
        handle = decoder_layers(model)[layer].register_forward_hook(hook)
    seq, out, first = list(ids), [], None
    try:
        with torch.no_grad():
            for _ in range(n):
                logits = model(torch.tensor([seq]), use_cache=False).logits[0, -1]
                first = logits if first is None else first
                tok = int(logits.argmax())
                if tok == eos:
                    break
                out.append(tok)
                seq.append(tok)
    finally:
        if handle is not None:
            handle.remove()
    return out, first


@pytest.mark.parametrize("backend", ["native", "bridge"])
@pytest.mark.parametrize("chat", [True, False])
def test_batched_generation_matches_manual_no_cache_loop(family, tiny_lm, tiny_dir, chat, backend) -> None:
    """Left-padded batches with the KV cache, on the twin and through the bridge, equal a no-cache plain-HF loop.

    This pins what transformers 5.24 broke: it passes the cache as ``cache=``, which the bridge's
    attention did not read, so every cached step through the bridge attended to itself alone.
    """
    lm = tiny_lm(family)
    plain = load_plain(tiny_dir(family))
    lengths = [len(encode_one(lm.tokenizer, p, chat=chat)[0]) for p in PROMPTS]
    assert len(set(sorted(lengths)[:3])) > 1  # the first batch of 3 (sorted by length) is left-padded
    gens = generate_detailed(lm, PROMPTS, chat=chat, max_new_tokens=6, batch_size=3, backend=backend)
    for i, prompt in enumerate(PROMPTS):
        ids, _ = encode_one(lm.tokenizer, prompt, chat=chat)
        ref, first = manual_greedy(plain, ids, 6, lm.tokenizer.eos_token_id)
        assert gens.token_ids[i] == ref, (family, backend, i)
        assert gens.texts[i] == lm.tokenizer.decode(ref, skip_special_tokens=True)
        torch.testing.assert_close(gens.first_logits[i], first, atol=1e-4, rtol=1e-5)


def test_intervention_is_active_inside_generate_with_cache(tiny_lm, tiny_dir) -> None:
    lm = tiny_lm("llama")
    plain = load_plain(tiny_dir("llama"))
    vector = torch.randn(lm.d_model, generator=torch.Generator().manual_seed(0)) * 3
    iv = AddVector(Site(0, "resid_post"), vector)
    steered = generate_detailed(lm, PROMPTS, chat=True, max_new_tokens=6, batch_size=4, intervention=iv)
    base = generate(lm, PROMPTS, chat=True, max_new_tokens=6, batch_size=4)
    assert iv.calls > 0
    assert steered.texts != base, "the vector should change at least one continuation"
    for i, prompt in enumerate(PROMPTS):
        ids, _ = encode_one(lm.tokenizer, prompt, chat=True)
        ref, first = manual_greedy(plain, ids, 6, lm.tokenizer.eos_token_id, layer=0, vector=vector)
        assert steered.token_ids[i] == ref
        torch.testing.assert_close(steered.first_logits[i], first, atol=1e-4, rtol=1e-5)
    # the hook is gone afterwards
    assert generate(lm, PROMPTS, chat=True, max_new_tokens=6, batch_size=4) == base


def test_batched_equals_one_by_one_and_order_kept(tiny_lm) -> None:
    lm = tiny_lm("qwen2")
    batched = generate_detailed(lm, PROMPTS, max_new_tokens=8, batch_size=4)
    for i, prompt in enumerate(PROMPTS):
        single = generate_detailed(lm, [prompt], max_new_tokens=8, batch_size=1)
        assert single.token_ids[0] == batched.token_ids[i]
        torch.testing.assert_close(single.first_logits[0], batched.first_logits[i], atol=1e-4, rtol=1e-5)


def test_embedded_generation_matches_manual_loop(embedded) -> None:
    prompts = ["What is the capital of France?", "Write a haiku about rain in spring, please."]
    gens = generate_detailed(embedded, prompts, max_new_tokens=5, batch_size=2)
    plain = load_plain(embedded.source)
    for i, prompt in enumerate(prompts):
        ids, _ = encode_one(embedded.tokenizer, prompt, chat=True)
        ref, first = manual_greedy(plain, ids, 5, embedded.tokenizer.eos_token_id)
        assert gens.token_ids[i] == ref
        torch.testing.assert_close(gens.first_logits[i], first, atol=2e-3, rtol=1e-4)


def test_bad_arguments(tiny_lm) -> None:
    from alignscope.errors import InputError

    lm = tiny_lm("llama")
    with pytest.raises(InputError, match="max_new_tokens"):
        generate(lm, ["x"], max_new_tokens=0)
    with pytest.raises(InputError, match="batch_size"):
        generate(lm, ["x"], batch_size=0)
    assert generate(lm, []) == []


def test_stateful_conditional_intervention_batched_equals_single(tiny_lm) -> None:
    """A per-prompt gate (state kept across decoding steps) must not leak between prompts or batches."""
    from alignscope.evals.capability import first_token_kl
    from alignscope.models.chat import encode_batch
    from alignscope.steering.conditional import ConditionalSteering
    from alignscope.steering.probes import LinearProbe

    lm = tiny_lm("llama")
    prompts = [*PROMPTS, "zzz", "qq rr"]
    gen = torch.Generator().manual_seed(0)
    probe = LinearProbe(torch.randn(1, lm.d_model, generator=gen), 0.0, (1,))
    vector = torch.randn(lm.d_model, generator=gen) * 3
    enc = encode_batch(lm.tokenizer, prompts, chat=True)
    with ConditionalSteering(probe, vector, layers=(1,), threshold=0.0, component="resid_post").apply(lm) as handle:
        lm.bridge(enc.input_ids, attention_mask=enc.attention_mask)
        scores = handle.scores
    iv = ConditionalSteering(probe, vector, layers=(1,), coefficient=2.0, threshold=float(scores.median()), component="resid_post")
    batched = generate_detailed(lm, prompts, max_new_tokens=5, batch_size=4, intervention=iv)
    singles = [generate_detailed(lm, [p], max_new_tokens=5, batch_size=1, intervention=iv).token_ids[0] for p in prompts]
    assert batched.token_ids == singles
    kl = first_token_kl(lm, prompts, iv, batch_size=6)
    kl_single = torch.cat([first_token_kl(lm, [p], iv, batch_size=1) for p in prompts])
    torch.testing.assert_close(kl, kl_single, atol=1e-5, rtol=1e-4)
    gated = scores > float(scores.median())
    assert bool((kl[gated] > 0).all()) and bool((kl[~gated] == 0).all())
