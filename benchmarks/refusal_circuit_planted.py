"""The refusal-circuit study against a known answer: a refusal mechanism planted at a known site of the embedded model.

The plant (:func:`alignscope.steering.planted.plant_refusal`): a logistic probe on ``resid_pre``
of layer ``--layer`` (averaged over the user's message, fitted on the ranking split of the
built-in pairs) gates the refusal-mode vector (``contrast``) added to ``mlp_out`` of that layer.
It is saved as an intervention file and the whole study (``study: refusal_circuit``) runs with it
active, as ``examples/refusal_circuit.yaml`` does.

Targets (issue 13):

* the planted site ``mlp_out@L<layer>`` ranks first, in >= 95% of bootstrap resamples of the pairs;
* ablating the top component returns held-out harmful refusal to the unplanted baseline, within
  the intervals (the Wilson intervals of the two rates overlap).

Also prints the study's wall and process CPU time (the cost target: <= 15 minutes on 2 CPU cores; on a
shared machine the CPU time is the steadier figure).

Run: .venv/bin/python benchmarks/refusal_circuit_planted.py [--out DIR] [--layer 14] [--coefficient 0.4] [--threads 2]
     [--ks 1,5,10,20] [--n-random 20] [--n-pairs N] [--max-new-tokens 24] [--method exact|attribution] [--candidates 40]
     [--ablation mean|zero|resample|direction]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    from alignscope.data.refusal_pairs import load_refusal_pairs, split_pairs
    from alignscope.models.loader import load_model
    from alignscope.pipeline.circuit_config import parse_circuit_config
    from alignscope.pipeline.circuit_run import run_circuit_study
    from alignscope.steering.intervention_io import save_intervention
    from alignscope.steering.planted import plant_refusal

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmark_runs/refusal_circuit_planted")
    ap.add_argument("--layer", type=int, default=14)
    ap.add_argument("--coefficient", type=float, default=0.4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-random", type=int, default=20)
    ap.add_argument("--ks", default="1,5,10,20", help="comma-separated k values of the ablation curve")
    ap.add_argument("--n-pairs", type=int, default=None, help="ranking pairs patched (default: all 40)")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--method", choices=["exact", "attribution"], default="exact",
                    help="patching: every component exactly, or a gradient first pass then exact patching of the top --candidates")
    ap.add_argument("--candidates", type=int, default=40)
    ap.add_argument("--ablation", choices=["zero", "mean", "resample", "direction"], default="mean",
                    help="how ablated components are set (direction: only their harmful-minus-harmless direction)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start, cpu = time.perf_counter(), time.process_time()
    lm = load_model("default")
    rank = split_pairs(load_refusal_pairs("builtin"), "rank")
    iv = plant_refusal(lm, [p.harmful for p in rank], [p.harmless for p in rank], layer=args.layer, component="mlp_out",
                       vector="contrast", coefficient=args.coefficient)
    planted = save_intervention(out / "planted.safetensors", iv, model=lm.name)
    plant_seconds = time.perf_counter() - start
    cfg = parse_circuit_config({"study": "refusal_circuit", "intervention": str(planted), "patching": {"n_pairs": args.n_pairs, "method": args.method,
                                                                                 "candidates": args.candidates},
                                "ablation": {"n_random": args.n_random, "ks": [int(k) for k in args.ks.split(",")],
                                             "max_new_tokens": args.max_new_tokens, "method": args.ablation}})
    cpu_study = time.process_time()
    result = run_circuit_study(cfg, out / "study", progress=False)
    s = result.summary()
    site = f"mlp_out@L{args.layer}"
    top = s["top_components"][0]
    k1 = next(r for r in s["ablation"] if r["k"] == 1)
    unplanted = s["reference"]["without_intervention"]
    overlap = k1["ci95"][0] <= unplanted["ci95"][1] and unplanted["ci95"][0] <= k1["ci95"][1]
    report = {
        "planted_site": site, "top_component": top["component"], "top_effect": top["effect"], "top_ci95": top["ci95"],
        "first_place_rate": s["first_place_rate"], "rank_target_met": top["component"] == site and s["first_place_rate"] >= 0.95,
        "harmful_refusal_planted": s["reference"]["with_intervention"], "harmful_refusal_unplanted": unplanted,
        "harmful_refusal_top1_ablated": {k: k1[k] for k in ("refusal_rate", "ci95")}, "ablation_target_met": overlap,
        "ablation": s["ablation"], "baseline": s["baseline"], "study_seconds": s["seconds"],
        "study_cpu_seconds": round(time.process_time() - cpu_study, 1),
        "plant_seconds": round(plant_seconds, 1), "total_cpu_seconds": round(time.process_time() - cpu, 1),
        "settings": {"ks": args.ks, "n_random": args.n_random, "n_pairs": args.n_pairs, "max_new_tokens": args.max_new_tokens,
                     "method": args.method, "candidates": args.candidates, "ablation": args.ablation},
        "threads": args.threads,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
