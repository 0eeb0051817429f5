"""Hidden-state extraction throughput of the AQI (``geometry.pooling.layer_states``: every layer's ``resid_post``
through the one reader, mean-pooled over real tokens) as a ratio to one plain HF forward with
``output_hidden_states=True`` on the same prompts, batches and left padding (its hidden states pooled the same way).

Interleaved rounds after a warm-up (``benchmarks/_timing.py``); the ratio is HF's median seconds over ours
(>= 1: ours is at least as fast; target >= 0.9).

Run: .venv/bin/python benchmarks/hidden_state_throughput.py [--n 96] [--batch-size 16] [--rounds 5]
"""

from __future__ import annotations

import argparse

import torch

from _timing import interleaved_medians
from alignscope.data.axioms import load_axiom_set
from alignscope.geometry.pooling import layer_states
from alignscope.models.batches import encode_prompts, pad_id, padded_batches
from alignscope.models.loader import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    lm = load_model("default", device="cpu")
    texts = load_axiom_set("builtin:axioms:test").texts[: args.n]
    batches = padded_batches(encode_prompts(lm.tokenizer, texts, chat=True), args.batch_size, pad_id(lm.tokenizer))

    def ours() -> None:
        layer_states(lm, texts, token_pool="mean", chat=True, batch_size=args.batch_size)

    def plain_hf() -> None:
        for b in batches:
            with torch.no_grad():
                hs = lm.hf_model(b.input_ids, attention_mask=b.attention_mask, output_hidden_states=True).hidden_states
            m = b.attention_mask.float()
            torch.stack([torch.einsum("bs,bsd->bd", m, h.float()) / m.sum(1, keepdim=True) for h in hs[1:]], dim=1)

    med = interleaved_medians({"alignscope layer_states": ours, "HF output_hidden_states": plain_hf}, args.rounds)
    print(f"{len(texts)} chat prompts, batch size {args.batch_size}, {lm.n_layers} layers, {args.rounds} interleaved rounds")
    for name, sec in med.items():
        print(f"{name:<26} {sec:8.3f} s  {len(texts) / sec:8.1f} prompts/s")
    print(f"ratio (HF seconds / ours): {med['HF output_hidden_states'] / med['alignscope layer_states']:.3f} (target >= 0.9)")


if __name__ == "__main__":
    main()
