"""Steered ``generate`` throughput as a ratio to plain Hugging Face ``generate`` on the embedded model.

The same prompts (one left-padded batch), the same number of new tokens (forced with
``min_new_tokens``), greedy, KV cache. Conditions, interleaved round by round and repeated
(median wall time):

* ``plain HF (sdpa)``: a fresh ``AutoModelForCausalLM`` with its default attention (sdpa), no
  bridge: the baseline every ratio is taken to;
* ``plain HF (eager)``: the same with eager attention (what the bridge forces);
* ``native, ...``: the path :func:`~alignscope.evals.generation.generate_detailed` takes by default
  (``backend="auto"``): the native twin sharing the bridge model's weights, the intervention's
  hooks on its modules (:class:`~alignscope.hooks.backends.NativeTarget`);
* ``bridge, ...``: ``backend="bridge"``: the bridge-wrapped model with hooks on its hook points
  (the path before the twin existed), for reference.

Interventions: ``no hooks``; ``addition`` (one activation addition at layer 10); ``ablation``
(directional ablation at every layer, 90 hooks); ``conditional`` (probe at layers 16 and 20,
user-message pooling, gating an addition at layer 10, so the gate needs the look-ahead prompt
pass: the shape ``fit_conscience`` picks on the embedded model; ``--intervention FILE`` uses a
saved one instead); with ``--mac FILE``, a trained alignment circuit (``alignscope mac train``).

Run:
    .venv/bin/python benchmarks/steering_generate_throughput.py [--tokens 32] [--batch 16] [--repeats 3] [--threads N] [--mac F]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from _timing import interleaved_medians, print_ratio_table
from alignscope.data.builtin_sets import load_builtin
from alignscope.evals.generation import generation_target, intervention_scope
from alignscope.hooks.backends import BridgeTarget
from alignscope.models.chat import encode_one, left_pad
from alignscope.models.loader import load_model
from alignscope.steering.conditional import ConditionalSteering
from alignscope.steering.intervention_io import load_intervention
from alignscope.steering.interventions import ActivationAddition, DirectionalAblation
from alignscope.steering.probes import LinearProbe, Pooling, chat_span

BASELINE = "plain HF (sdpa)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--intervention", help="a saved conditional intervention to time instead of the synthetic one")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: up to 2)")
    ap.add_argument("--mac", help="a trained alignment circuit (mac.safetensors) to time as one more condition")
    args = ap.parse_args()
    torch.set_num_threads(args.threads or max(1, min(2, torch.get_num_threads())))
    lm = load_model("default", device="cpu")
    plain_sdpa = AutoModelForCausalLM.from_pretrained(lm.source, dtype=torch.float32).eval()
    plain_eager = AutoModelForCausalLM.from_pretrained(lm.source, dtype=torch.float32, attn_implementation="eager").eval()
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
    interventions: dict[str, Any] = {"no hooks": None, "addition": ActivationAddition(vec, (10,), 0.4),
                                     "ablation": DirectionalAblation(vec), "conditional": conditional}
    if args.mac:
        interventions["alignment circuit"] = load_intervention(args.mac)

    def run_plain(model: torch.nn.Module) -> Callable[[], None]:
        def go() -> None:
            with torch.no_grad():
                model.generate(input_ids=ids, attention_mask=mask, **kw)  # type: ignore[operator]
        return go

    def run_ours(iv: Any, backend: str) -> Callable[[], None]:
        target = generation_target(lm, iv, backend)  # what generate_detailed does
        assert isinstance(target, BridgeTarget) == (backend == "bridge"), f"{backend} fell back to {target.name}"

        def go() -> None:
            with intervention_scope(lm, iv, None if isinstance(target, BridgeTarget) else target), torch.no_grad():
                target.root.generate(input_ids=ids, attention_mask=mask, **kw)  # type: ignore[operator]
        return go

    runs: dict[str, Callable[[], None]] = {BASELINE: run_plain(plain_sdpa), "plain HF (eager)": run_plain(plain_eager)}
    for backend in ("native", "bridge"):
        runs.update({f"{backend}, {name}": run_ours(iv, backend) for name, iv in interventions.items()})
    medians = interleaved_medians(runs, args.repeats)
    print(f"greedy generate, batch {args.batch} x {args.tokens} new tokens, median of {args.repeats} interleaved rounds "
          f"(CPU, {torch.get_num_threads()} threads)")
    print_ratio_table(medians, BASELINE, args.batch * args.tokens, label="condition")


if __name__ == "__main__":
    main()
