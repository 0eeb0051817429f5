"""The conscience benchmark: a selective refusal intervention on the embedded model, scored on the test split.

Fits :func:`alignscope.steering.conscience.fit_conscience` on the built-in train/val splits
(or loads a saved intervention with ``--intervention``), then generates greedily on the *test*
split (never used to choose anything) under three conditions:

* baseline: no intervention;
* unconditional: the same behaviour vector and coefficient added to every prompt;
* conditional: the fitted probe-gated intervention.

It prints, per condition, the refusal rate of harmful, harmless and lookalike test prompts
(k/n with a 95% Wilson interval, phrase detector over ``--max-new-tokens`` greedy tokens), the
mean first-token KL on harmless and lookalike prompts against the unsteered model, and for the
conditional the probe's gate rate on each set. The last stdout line is a JSON summary.

Run:
    .venv/bin/python benchmarks/steering_conscience.py [--intervention FILE] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from alignscope.data.builtin_sets import load_builtin
from alignscope.data.prompts import PromptSet
from alignscope.evals.behaviour import evaluate_refusal
from alignscope.evals.capability import first_token_kl
from alignscope.models.loader import load_model
from alignscope.stats import rate
from alignscope.steering.conditional import ConditionalSteering
from alignscope.steering.conscience import fit_conscience
from alignscope.steering.interventions import ActivationAddition, load_intervention, save_intervention
from alignscope.steering.probes import probe_features

SETS = ("harmful", "harmless", "lookalike")


def fit_or_load(lm: Any, args: argparse.Namespace) -> ConditionalSteering:
    """Load ``--intervention`` or fit on train/val and save to ``--out``."""
    if args.intervention:
        iv = load_intervention(args.intervention)
        assert isinstance(iv, ConditionalSteering), "expected a conditional intervention"
        return iv
    start = time.perf_counter()
    tr = {s: load_builtin(s, "train") for s in SETS}
    va = {s: load_builtin(s, "val") for s in SETS}
    fit = fit_conscience(lm, tr["harmful"], tr["harmless"], va["harmful"], va["harmless"],
                         lookalike_train=tr["lookalike"], lookalike_val=va["lookalike"])
    out = Path(args.out)
    path = save_intervention(out / "intervention.safetensors", fit.intervention, model=lm.name)
    (out / "conscience_table.json").write_text(json.dumps(fit.table, indent=1, default=str), encoding="utf-8")
    print(f"fitted on train/val in {time.perf_counter() - start:.0f}s -> {path}")
    print("chosen:", json.dumps(fit.table["chosen"]))
    return fit.intervention


def evaluate(lm: Any, test: dict[str, PromptSet], iv: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Refusal rate per set and first-token KL on harmless/lookalike for one condition."""
    allp = test["harmful"] + test["harmless"] + test["lookalike"]
    res = evaluate_refusal(lm, allp, intervention=iv, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    out: dict[str, Any] = {}
    start = 0
    for name in SETS:
        n = len(test[name])
        out[name] = rate(sum(res.refused[start:start + n]), n)
        start += n
    for name in ("harmless", "lookalike"):
        out[f"kl_{name}"] = float(first_token_kl(lm, test[name].texts, iv).mean()) if iv is not None else 0.0
    out["examples"] = {name: res.generations[i] for name, i in (("harmful", 0), ("harmless", len(test["harmful"])))}
    return out


def gate_rates(lm: Any, iv: ConditionalSteering, test: dict[str, PromptSet]) -> dict[str, Any]:
    """How often the probe fires on each test set."""
    p = iv.probe
    out = {}
    for name in SETS:
        scores = p.score(probe_features(lm, test[name], p.layers, component=p.component, pooling=p.pooling))
        out[name] = rate(int((scores > iv.threshold).sum()), len(scores))
    return out


def fmt(r: Any) -> str:
    return f"{r.k:>3}/{r.n:<3} {100 * r.rate:5.1f}% [{100 * r.ci95[0]:4.1f}, {100 * r.ci95[1]:5.1f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--intervention", help="a saved conditional intervention.safetensors (skips fitting)")
    ap.add_argument("--out", default="/tmp/alignscope_conscience", help="where a fitted intervention is saved")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--conditions", default="baseline,unconditional,conditional", help="comma-separated subset to run")
    args = ap.parse_args()
    torch.manual_seed(0)
    lm = load_model("default", device="cpu")
    iv = fit_or_load(lm, args)
    test = {s: load_builtin(s, "test") for s in SETS}
    conditions = {"baseline": None, "unconditional": ActivationAddition(iv.vector, iv.layers, iv.coefficient, iv.component),
                  "conditional": iv}
    results = {}
    for name, cond in conditions.items():
        if name not in args.conditions.split(","):
            continue
        t = time.perf_counter()
        results[name] = evaluate(lm, test, cond, args)
        results[name]["seconds"] = time.perf_counter() - t
        r = results[name]
        print(f"[{name} done in {r['seconds']:.0f}s] harmful {fmt(r['harmful'])} harmless {fmt(r['harmless'])} "
              f"lookalike {fmt(r['lookalike'])}", flush=True)
    print(f"\nTest split (never used for choices); greedy {args.max_new_tokens} tokens; refusal = phrase detector; 95% Wilson CIs")
    print(f"{'condition':<14} {'harmful':<30} {'harmless':<30} {'lookalike':<30} {'KL harmless':>11} {'KL lookalike':>12}")
    for name, r in results.items():
        print(f"{name:<14} {fmt(r['harmful']):<30} {fmt(r['harmless']):<30} {fmt(r['lookalike']):<30} "
              f"{r['kl_harmless']:>11.4f} {r['kl_lookalike']:>12.4f}")
    summary: dict[str, Any] = {name: {**{s: r[s].as_dict() for s in SETS}, "kl_harmless": r["kl_harmless"],
                                      "kl_lookalike": r["kl_lookalike"], "seconds": r["seconds"]} for name, r in results.items()}
    if "conditional" in results:
        gates = gate_rates(lm, iv, test)
        print(f"{'gate fires':<14} {fmt(gates['harmful']):<30} {fmt(gates['harmless']):<30} {fmt(gates['lookalike']):<30}")
        summary["gate"] = {s: g.as_dict() for s, g in gates.items()}
    print(f"conditional: steer layer {list(iv.layers)} x {iv.coefficient}, probe layers {list(iv.probe.layers)} "
          f"({iv.probe.pooling.kind} pooling), threshold {iv.threshold:.3f}")
    for name in results:
        print(f"  {name} examples: {json.dumps(results[name]['examples'])}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
