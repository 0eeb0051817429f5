"""Steered greedy-generation throughput as a ratio to plain HF ``generate`` on the embedded model.

All variants generate the same tokens budget for the same prompts in the same process, with
the same left-padded batches, interleaved round by round (so machine load hits them alike):

* ``hf``: a fresh plain ``AutoModelForCausalLM`` (no bridge), ``model.generate`` greedy with KV cache;
* ``alignscope``: :func:`alignscope.evals.generation.generate_detailed` with no intervention (the whole
  evaluation path: length batching, first-step logits; generation on the native twin by default);
* ``addition``: the same with an :class:`ActivationAddition` at layer 14;
* ``conditional``: the same with a :class:`ConditionalSteering` gate (probe at layer 14).

Each variant is timed on ``--rounds`` rounds; the median seconds and tokens/s are printed with
the ratio to ``hf`` (higher is better; 1.0 = plain HF speed).

Run: .venv/bin/python benchmarks/eval_generation_throughput.py [--n 16] [--tokens 32] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse

import torch

from _timing import interleaved_medians, print_ratio_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="prompts (one batch)")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per prompt")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM, GenerationConfig

    from alignscope.data.builtin_sets import load_builtin
    from alignscope.evals.generation import generate_detailed
    from alignscope.models.chat import encode_one, left_pad
    from alignscope.models.loader import load_model
    from alignscope.steering.conditional import ConditionalSteering
    from alignscope.steering.interventions import ActivationAddition
    from alignscope.steering.probes import LinearProbe

    lm = load_model("default", device="cpu")
    plain = AutoModelForCausalLM.from_pretrained(lm.source, dtype=torch.float32).eval()
    prompts = load_builtin("harmless", split="test").texts[: args.n]
    gen = torch.Generator().manual_seed(0)
    vec = torch.randn(lm.d_model, generator=gen)
    addition = ActivationAddition(vec, layers=(14,), coefficient=0.5)
    probe = LinearProbe(torch.randn(1, lm.d_model, generator=gen), 0.0, (14,), method="benchmark")
    conditional = ConditionalSteering(probe, vec, layers=(14,), coefficient=0.5, threshold=0.0)
    ids, mask = left_pad([encode_one(lm.tokenizer, p, chat=True)[0] for p in prompts], int(lm.tokenizer.pad_token_id))
    # Both sides suppress EOS for the whole budget, so they do the same work.
    config = GenerationConfig(max_new_tokens=args.tokens, min_new_tokens=args.tokens, do_sample=False,
                              pad_token_id=int(lm.tokenizer.pad_token_id), eos_token_id=lm.tokenizer.eos_token_id)

    def run_hf() -> None:
        with torch.no_grad():
            plain.generate(input_ids=ids, attention_mask=mask, generation_config=config)

    def ours(intervention: object | None):
        return lambda: generate_detailed(lm, prompts, max_new_tokens=args.tokens, min_new_tokens=args.tokens, batch_size=args.n,
                                         intervention=intervention)

    variants = {"hf": run_hf, "alignscope": ours(None), "addition": ours(addition), "conditional": ours(conditional)}
    medians = interleaved_medians(variants, args.rounds)
    print(f"embedded model, {args.n} prompts x {args.tokens} new tokens, batch {args.n}, {args.threads} thread(s), "
          f"median of {args.rounds} interleaved rounds")
    print_ratio_table(medians, "hf", args.n * args.tokens)

if __name__ == "__main__":
    main()
