"""Steered ``generate`` throughput as a ratio to plain Hugging Face ``generate`` on the embedded model.

The same prompts (one left-padded batch), the same number of new tokens (forced with
``min_new_tokens``), greedy, KV cache. Conditions, interleaved and repeated (median wall time):

* ``plain HF``: a fresh ``AutoModelForCausalLM`` (eager attention, as the bridge uses), no bridge;
* ``bridge, no hooks``: ``lm.hf_model.generate`` of the bridge-wrapped model;
* ``addition``: one activation addition at layer 10;
* ``ablation``: directional ablation at every layer (90 hooks);
* ``conditional``: probe at layers 16 and 20 (user-message pooling) gating an addition at
  layer 10, so the gate needs the look-ahead prompt pass (the shape ``fit_conscience`` picks
  on the embedded model); ``--intervention FILE`` uses a saved one instead.

Run:
    .venv/bin/python benchmarks/steering_generate_throughput.py [--tokens 32] [--batch 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from alignscope.data.builtin_sets import load_builtin
from alignscope.models.chat import encode_one, left_pad
from alignscope.models.loader import load_model
from alignscope.steering.conditional import ConditionalSteering
from alignscope.steering.interventions import ActivationAddition, DirectionalAblation, load_intervention
from alignscope.steering.probes import LinearProbe, Pooling, chat_span


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--intervention", help="a saved conditional intervention to time instead of the synthetic one")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    lm = load_model("default", device="cpu")
    plain = AutoModelForCausalLM.from_pretrained(lm.source, dtype=torch.float32, attn_implementation="eager").eval()
    prompts = load_builtin("harmless", "val").texts[: args.batch]
    ids, mask = left_pad([encode_one(lm.tokenizer, p, chat=True)[0] for p in prompts], int(lm.tokenizer.pad_token_id))
    kw = {"max_new_tokens": args.tokens, "min_new_tokens": args.tokens, "do_sample": False,
          "pad_token_id": int(lm.tokenizer.pad_token_id)}
    g = torch.Generator().manual_seed(0)
    vec = torch.randn(lm.d_model, generator=g)
    head, tail = chat_span(lm.tokenizer)
    probe = LinearProbe(torch.randn(2, lm.d_model, generator=g) * 1e-3, 0.0, (16, 20), pooling=Pooling("span", skip_head=head, skip_tail=tail))
    conditional = load_intervention(args.intervention) if args.intervention else ConditionalSteering(probe, vec, (10,), 0.4, 0.0)
    assert isinstance(conditional, ConditionalSteering)
    interventions: dict[str, Any] = {"bridge, no hooks": None, "addition": ActivationAddition(vec, (10,), 0.4),
                                     "ablation": DirectionalAblation(vec), "conditional": conditional}

    def run_plain() -> None:
        with torch.no_grad():
            plain.generate(input_ids=ids, attention_mask=mask, **kw)

    def run_bridge(iv: Any) -> Callable[[], None]:
        def go() -> None:
            with torch.no_grad():
                if iv is None:
                    lm.hf_model.generate(input_ids=ids, attention_mask=mask, **kw)
                else:
                    with iv.apply(lm):
                        lm.hf_model.generate(input_ids=ids, attention_mask=mask, **kw)
        return go

    runs: dict[str, Callable[[], None]] = {"plain HF": run_plain, **{k: run_bridge(v) for k, v in interventions.items()}}
    for fn in runs.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            times[name].append(timed(fn))
    base = statistics.median(times["plain HF"])
    n_tok = args.batch * args.tokens
    print(f"greedy generate, batch {args.batch} x {args.tokens} new tokens, median of {args.repeats} (CPU, {torch.get_num_threads()} threads)")
    print(f"{'condition':<18} {'seconds':>8} {'tokens/s':>9} {'ratio to plain HF':>18}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<18} {med:>8.3f} {n_tok / med:>9.1f} {base / med:>18.3f}")


if __name__ == "__main__":
    main()
