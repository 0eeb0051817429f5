"""ROME causal tracing on the embedded model over facts from ROME's known_1000 set.

Uses ``../shared/data/rome_knowns/known_1000.json`` when present (exits cleanly otherwise). A fact
counts as known when the model's greedy next token after the prompt is the first token of the
attribute (ROME keeps only known facts). For the first ``--n`` known facts it runs causal tracing
(noise 3x the embedding std on the subject, ``--samples`` seeded noise draws; restore single block
outputs, and windows of 10 layers for attention and MLP) and reports, ROME-style, the mean indirect
effect by token category (first / middle / last subject token, first subsequent token, further
tokens, last token) and layer, with the peak of each kind, plus time per fact.

Run: .venv/bin/python benchmarks/causal_tracing_knowns.py [--n 10] [--samples 1] [--scan 300] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

KNOWNS = Path(__file__).resolve().parents[2] / "shared" / "data" / "rome_knowns" / "known_1000.json"
CATEGORIES = ("first subject", "middle subject", "last subject", "first subsequent", "further", "last")


def categories(n_tokens: int, subject: list[int]) -> list[str]:
    """ROME's token categories for each position."""
    out = []
    for p in range(n_tokens):
        if p == n_tokens - 1:
            out.append("last")
        elif p == subject[0]:
            out.append("first subject")
        elif p == subject[-1]:
            out.append("last subject")
        elif subject[0] < p < subject[-1]:
            out.append("middle subject")
        elif p == subject[-1] + 1:
            out.append("first subsequent")
        else:
            out.append("further")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10, help="known facts to trace")
    parser.add_argument("--scan", type=int, default=300, help="facts scanned to find known ones")
    parser.add_argument("--samples", type=int, default=1, help="noise samples per fact")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (2 = this machine's cores; 1 is steadier on a busy box)")
    args = parser.parse_args()
    if not KNOWNS.is_file():
        print(f"skipped: {KNOWNS} not found")
        sys.exit(0)
    torch.set_num_threads(args.threads)
    from alignscope.circuits.tracing import causal_trace, subject_positions
    from alignscope.models import load_model

    lm = load_model("default", device="cpu")
    tok = lm.tokenizer
    facts = json.loads(KNOWNS.read_text(encoding="utf-8"))[: args.scan]
    known = []
    with torch.no_grad():
        for fact in facts:
            ids = tok(fact["prompt"])["input_ids"]
            top = int(lm.bridge(torch.tensor([ids]))[0, -1].argmax())
            target = tok(" " + fact["attribute"], add_special_tokens=False)["input_ids"][0]
            if top == target:
                known.append(fact)
            if len(known) == args.n:
                break
    print(f"{len(known)} known facts among the first {min(args.scan, len(facts))} scanned (greedy next token = attribute's first token)")
    sums = {k: np.zeros((len(CATEGORIES), lm.n_layers)) for k in ("resid", "attn", "mlp")}
    counts = np.zeros(len(CATEGORIES))
    totals, times = [], []
    for fact in known:
        start = time.perf_counter()
        res = causal_trace(lm, fact["prompt"], fact["subject"], samples=args.samples, seed=0)
        times.append(time.perf_counter() - start)
        totals.append(res.clean_metric - res.corrupt_metric)
        cats = categories(len(res.tokens), subject_positions(tok, fact["prompt"], fact["subject"]))
        for p, cat in enumerate(cats):
            c = CATEGORIES.index(cat)
            counts[c] += 1
            for kind, eff in res.effects.items():
                sums[kind][c] += eff[:, p].numpy()
        print(f"  {fact['prompt']!r} -> {res.answer!r}: p clean {res.clean_metric:.3f}, noised {res.corrupt_metric:.3f}, "
              f"{times[-1]:.1f} s")
    if not known:
        return
    print(f"\nmean total effect (p clean - p noised): {np.mean(totals):.3f}; mean time per fact {np.mean(times):.1f} s "
          f"({lm.n_layers} layers x ~{np.mean([len(tok(f['prompt'])['input_ids']) for f in known]):.0f} tokens x 3 kinds, "
          f"{args.samples} noise sample(s))")
    summary = {}
    for kind, total in sums.items():
        mean = total / np.maximum(counts, 1)[:, None]
        c, layer = np.unravel_index(int(np.argmax(mean)), mean.shape)
        summary[kind] = {"peak_category": CATEGORIES[c], "peak_layer": int(layer), "peak_indirect_effect": float(mean[c, layer]),
                         "by_category_max": {cat: float(mean[i].max()) for i, cat in enumerate(CATEGORIES) if counts[i]}}
        print(f"{kind:>5}: peak mean indirect effect {mean[c, layer]:.3f} at the {CATEGORIES[c]} token, layer {layer}; "
              + ", ".join(f"{cat} max {mean[i].max():.3f} (layer {int(mean[i].argmax())})" for i, cat in enumerate(CATEGORIES) if counts[i]))
    print(json.dumps({"n_known": len(known), "samples": args.samples, "mean_total_effect": float(np.mean(totals)),
                      "mean_seconds": float(np.mean(times)), "summary": summary}))


if __name__ == "__main__":
    main()
