"""Patching speed of the refusal-circuit study: the replay engine against a naive loop on the same work.

Work: the study's patching of one direction (denoise: harmful into harmless at the shared
post-instruction positions) for ``--pairs`` built-in ranking pairs, every component of the study
(``resid_pre``, ``attn_out``, ``mlp_out`` per layer and every head) on the embedded model.

* replay: :func:`alignscope.circuits.suffix_patching.patch_shared_suffix` (record both runs once,
  re-run only the blocks after the patched layer, staircase batching, last-position unembedding);
* naive: one full bridge forward per patched component with a write hook at that site.

Prints both wall times, the speed-up and the max |difference| of the effects. With ``--study-dir``
it also prints the whole-study wall time recorded in that run's ``manifest.json``.

Run: .venv/bin/python benchmarks/refusal_circuit_speed.py [--pairs 2] [--threads 2] [--study-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    from alignscope.circuits.replay import record_run
    from alignscope.circuits.suffix_patching import patch_shared_suffix, study_components
    from alignscope.data.refusal_pairs import load_refusal_pairs, split_pairs
    from alignscope.hooks.backends import BridgeTarget
    from alignscope.hooks.handle import HookHandle
    from alignscope.metrics import refusal_logodds_metric, refusal_token_ids
    from alignscope.models.chat import encode_one
    from alignscope.models.loader import load_model
    from alignscope.sites import Site

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--study-dir", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model("default")
    metric = refusal_logodds_metric(refusal_token_ids(lm.tokenizer))
    comps = study_components(lm, ("resid_pre", "attn_out", "mlp_out", "head"))
    pairs = split_pairs(load_refusal_pairs("builtin"), "rank")[: args.pairs]
    replay_s = naive_s = 0.0
    max_diff = 0.0
    for p in pairs:
        bad, nb = encode_one(lm.tokenizer, p.harmful, chat=True)
        good, ng = encode_one(lm.tokenizer, p.harmless, chat=True)
        n = min(nb, ng)
        t0 = time.perf_counter()
        fast = patch_shared_suffix(lm, good, bad, n, comps, metric)
        replay_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        source = record_run(lm, bad, sorted({c.component for c in comps}))
        ids = torch.tensor([good])
        with torch.no_grad():
            base = float(metric(lm.bridge(ids)[:, -1:])[0])
        naive = []
        for c in comps:
            value = source.acts[(c.component, c.layer)][-n:]

            def write(_m, _i, out, value=value, c=c, n=n):  # type: ignore[no-untyped-def]
                new = out.clone()
                if c.head is None:
                    new[:, -n:] = value
                else:
                    view = new.reshape(*new.shape[:2], lm.n_heads, -1)
                    view[:, -n:, c.head] = value[:, c.head]
                    new = view.reshape(out.shape)
                return new

            with HookHandle() as h, torch.no_grad():
                h.add(BridgeTarget(lm).register(Site(c.layer, c.component), write))
                naive.append(float(metric(lm.bridge(ids)[:, -1:])[0]) - base)
        naive_s += time.perf_counter() - t0
        max_diff = max(max_diff, float((fast.effects - torch.tensor(naive)).abs().max()))
    report = {"pairs": len(pairs), "components": len(comps), "patches": len(pairs) * len(comps), "replay_seconds": round(replay_s, 2),
              "naive_seconds": round(naive_s, 2), "speedup": round(naive_s / replay_s, 2), "max_abs_diff": max_diff, "threads": args.threads}
    if args.study_dir:
        manifest = json.loads((Path(args.study_dir) / "manifest.json").read_text(encoding="utf-8"))
        report["study_seconds"] = manifest["seconds_total"]
        report["study_stages"] = manifest["stages"]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
