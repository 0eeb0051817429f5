"""Attribution patching vs activation patching on resid_pre: faithfulness and cost, side by side.

On the embedded SmolLM2-135M-Instruct, for each built-in clean/corrupt pair (or ``--pairs FILE.jsonl``):

* activation patching of every (layer, position) of ``resid_pre`` (exact, the reference);
* attribution patching, plain gradient x delta (``ig_steps=0``);
* attribution patching, integrated gradients (EAP-IG style) with each of ``--ig-steps``.

For each estimate: Pearson and Spearman correlation with the exact effects, top-k overlap (share
of the k largest-|effect| sites found in the estimate's top k), wall and process CPU time, and
time as a share of activation patching's. A warm-up pass runs first so no method pays one-off costs.

Run: .venv/bin/python benchmarks/attribution_faithfulness.py [--ig-steps 4,5,8] [--k 10] [--pairs FILE] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

PAIRS = [
    ("The Eiffel Tower is located in the city of", "The Colosseum is located in the city of", " Paris", " Rome"),
    ("When Mary and John went to the store, John gave a drink to", "When Mary and John went to the store, Mary gave a drink to",
     " Mary", " John"),
    ("The capital city of France is", "The capital city of Italy is", " Paris", " Rome"),
]


def timed(fn):  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ig-steps", default="4,5,8", help="comma-separated IG step counts")
    parser.add_argument("--k", type=int, default=10, help="top-k for the overlap")
    parser.add_argument("--pairs", default=None, help="JSONL pair file (clean, corrupt, answer, foil) instead of the built-in pairs")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (2 = this machine's cores; 1 is steadier on a busy box)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from alignscope.circuits.attribution import attribution_patching, faithfulness
    from alignscope.circuits.pairs import PromptPair, encode_pair, load_pairs
    from alignscope.circuits.patching import activation_patching
    from alignscope.metrics import logit_diff_metric
    from alignscope.models import load_model

    lm = load_model("default", device="cpu")
    pairs = load_pairs(args.pairs) if args.pairs else [PromptPair(*p) for p in PAIRS]
    steps = [0, *[int(s) for s in args.ig_steps.split(",") if s.strip()]]
    warm = encode_pair(lm.tokenizer, pairs[0])
    m = logit_diff_metric(warm.answer_id, warm.foil_id)
    activation_patching(lm, warm.clean_ids[:4], warm.corrupt_ids[:4], metric=m)
    for s in steps:
        attribution_patching(lm, warm.clean_ids[:4], warm.corrupt_ids[:4], metric=m, ig_steps=s)

    rows = []
    for pair in pairs:
        enc = encode_pair(lm.tokenizer, pair)
        metric = logit_diff_metric(enc.answer_id, enc.foil_id)
        act, act_wall, act_cpu = timed(lambda enc=enc, metric=metric: activation_patching(lm, enc.clean_ids, enc.corrupt_ids, metric=metric))
        print(f"\n{pair.clean!r} -> {pair.answer!r} vs {pair.foil!r}: {len(enc.clean_ids)} tokens; clean {act.clean_metric:.2f}, "
              f"corrupt {act.corrupt_metric:.2f}; activation patching {act_wall:.2f} s wall, {act_cpu:.2f} s CPU")
        print(f"  {'method':<22}{'pearson':>8}{'spearman':>9}{'top-' + str(args.k):>7}{'wall s':>8}{'CPU s':>7}{'wall %':>8}{'CPU %':>7}")
        for s in steps:
            est, wall, cpu = timed(lambda enc=enc, metric=metric, s=s: attribution_patching(lm, enc.clean_ids, enc.corrupt_ids,
                                                                                             metric=metric, ig_steps=s))
            f = faithfulness(act, est, k=args.k)
            name = "plain grad x delta" if s == 0 else f"IG, {s} steps"
            rows.append({"pair": pair.clean, "method": name, "ig_steps": s, "pearson": f["pearson"], "spearman": f["spearman"],
                         "top_k_overlap": f["top_k_overlap"], "wall_s": wall, "cpu_s": cpu, "activation_wall_s": act_wall,
                         "activation_cpu_s": act_cpu, "wall_share": wall / act_wall, "cpu_share": cpu / act_cpu})
            print(f"  {name:<22}{f['pearson']:>8.3f}{f['spearman']:>9.3f}{f['top_k_overlap']:>7.2f}{wall:>8.2f}{cpu:>7.2f}"
                  f"{100 * wall / act_wall:>7.1f}%{100 * cpu / act_cpu:>6.1f}%")
    print("\nmean over pairs:")
    summary = {}
    for s in steps:
        sel = [r for r in rows if r["ig_steps"] == s]
        summary[sel[0]["method"]] = {k: float(np.mean([r[k] for r in sel])) for k in ("pearson", "spearman", "top_k_overlap",
                                                                                   "wall_share", "cpu_share")}
        v = summary[sel[0]["method"]]
        print(f"  {sel[0]['method']:<22} pearson {v['pearson']:.3f}, spearman {v['spearman']:.3f}, top-{args.k} {v['top_k_overlap']:.2f}, "
              f"time {100 * v['wall_share']:.1f}% wall / {100 * v['cpu_share']:.1f}% CPU of activation patching")
    print(json.dumps({"k": args.k, "n_pairs": len(pairs), "mean": summary}))


if __name__ == "__main__":
    main()
