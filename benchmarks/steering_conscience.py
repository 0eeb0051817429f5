"""The conscience benchmark: a selective refusal intervention on the embedded model, scored on the test split.

Fits :func:`alignscope.recipes.conscience.fit_conscience` on the built-in train/val splits
(or loads a saved intervention with ``--intervention``), then generates greedily on the *test*
split (never used to choose anything) under three conditions:

* baseline: no intervention;
* unconditional: the same behaviour vector and coefficient added to every prompt;
* conditional: the fitted probe-gated intervention.

It prints, per condition, the refusal rate of harmful, harmless and lookalike test prompts
(k/n with a 95% Wilson interval, phrase detector over ``--max-new-tokens`` greedy tokens), the
mean first-token KL on harmless and lookalike prompts against the unsteered model, and for the
conditional the probe's gate rate on each set; then the built-in test rates per prompt style
(question, request, task, casual, context, keywords, framed). The last stdout line is a JSON summary.

``--compare-cv`` also fits the conscience with ``cv="random"`` (the probe's threshold and
candidate chosen on random folds, as before grouped folds existed) and scores it beside the
default (``cv="grouped"``: folds that hold out whole categories, then whole styles), in the same
run, on the same prompts.

When the public data sets are present (``--public DIR``, default ``../shared/data``), two more
held-out sets written by other people are scored too, which nothing here was ever fitted or
chosen on: ``ext_harmful`` (the 39 refusal_direction ``harmful_val`` prompts plus a seeded
sample of AdvBench behaviours, ``--n-public`` in all) and ``ext_harmless`` (a seeded sample of
refusal_direction ``harmless_val``). They measure how the gate transfers to another
distribution of phrasing. ``--public-round`` picks disjoint samples: round 0 was inspected
during development (it showed the gate keyed on terse task phrasing), so the default is round 1.
A third, ``ext_harmful_other``, is every refusal_direction ``harmful_train`` prompt that is not an
AdvBench behaviour (MaliciousInstruct and TDC2023: 143 prompts in other people's phrasing, "How
to ...?", "Ways to ...?"), added when the built-in sets gained styles.

Run:
    .venv/bin/python benchmarks/steering_conscience.py [--intervention FILE] [--out DIR] [--public DIR] [--compare-cv]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import torch

from alignscope.data.builtin_sets import load_builtin
from alignscope.data.prompts import PromptSet
from alignscope.evals.behaviour import evaluate_refusal
from alignscope.evals.capability import first_token_kl
from alignscope.models.loader import load_model
from alignscope.recipes.conscience import ConscienceConfig, fit_conscience
from alignscope.stats import rate
from alignscope.steering.conditional import ConditionalSteering
from alignscope.steering.intervention_io import load_intervention, save_intervention
from alignscope.steering.interventions import ActivationAddition
from alignscope.steering.probes import probe_features

SETS = ("harmful", "harmless", "lookalike")
EXT_SETS = ("ext_harmful", "ext_harmful_other", "ext_harmless")


def public_sets(root: Path, n: int, round_: int = 0) -> dict[str, PromptSet]:
    """Held-out public prompts (empty when ``root`` lacks them): see the module docstring.

    Round 0 is the first sample (the 39 refusal_direction ``harmful_val`` prompts plus AdvBench, and
    ``harmless_val``); each later round ``r`` is a fresh block of ``n`` prompts disjoint from every
    earlier round (AdvBench only for harmful), so a sample that was looked at can be retired.
    """
    rd, adv = root / "refusal_direction", root / "advbench" / "harmful_behaviors.csv"
    if not (rd / "harmful_val.json").is_file() or not adv.is_file() or not (rd / "harmless_val.json").is_file():
        return {}
    from alignscope.data.public import load_advbench, load_refusal_direction

    harmful = list(load_refusal_direction(rd / "harmful_val.json", "harmful"))
    advbench = list(load_advbench(adv))
    harmless_pool = list(load_refusal_direction(rd / "harmless_val.json", "harmless"))
    harmful += random.Random(0).sample(advbench, max(0, n - len(harmful)))
    harmless = random.Random(0).sample(harmless_pool, n)
    if round_ > 0:
        seen = {p.prompt for p in harmful + harmless}
        rest_harmful = [p for p in advbench if p.prompt not in seen]
        rest_harmless = [p for p in harmless_pool if p.prompt not in seen]
        random.Random(1).shuffle(rest_harmful)
        random.Random(1).shuffle(rest_harmless)
        block = slice((round_ - 1) * n, round_ * n)
        harmful, harmless = rest_harmful[block], rest_harmless[block]
    adv_goals = {p.prompt.strip() for p in advbench}
    other = [p for p in load_refusal_direction(rd / "harmful_train.json", "harmful") if p.prompt.strip() not in adv_goals] \
        if (rd / "harmful_train.json").is_file() else []
    out = {"ext_harmful": PromptSet(harmful[:n], f"public:harmful:round{round_}"),
           "ext_harmless": PromptSet(harmless, f"public:harmless:round{round_}")}
    if other:
        out["ext_harmful_other"] = PromptSet(other, "public:refusal_direction:harmful_train-not-advbench")
    return out


def fit(lm: Any, args: argparse.Namespace, cv: str) -> ConditionalSteering:
    """Fit on the built-in train/val splits with ``cv`` folds; save the intervention and its table under ``--out/cv``."""
    start = time.perf_counter()
    tr = {s: load_builtin(s, "train") for s in SETS}
    va = {s: load_builtin(s, "val") for s in SETS}
    result = fit_conscience(lm, tr["harmful"], tr["harmless"], va["harmful"], va["harmless"],
                            lookalike_train=tr["lookalike"], lookalike_val=va["lookalike"],
                            config=ConscienceConfig(cv=cv))  # type: ignore[arg-type]
    out = Path(args.out) / cv
    out.mkdir(parents=True, exist_ok=True)
    path = save_intervention(out / "intervention.safetensors", result.intervention, model=lm.name)
    (out / "conscience_table.json").write_text(json.dumps(result.table, indent=1, default=str), encoding="utf-8")
    print(f"fitted (cv={cv}) on train/val in {time.perf_counter() - start:.0f}s -> {path}")
    print("chosen:", json.dumps(result.table["chosen"]), flush=True)
    return result.intervention


def fit_or_load(lm: Any, args: argparse.Namespace) -> ConditionalSteering:
    """Load ``--intervention`` or fit with the default (grouped) folds."""
    if args.intervention:
        iv = load_intervention(args.intervention)
        assert isinstance(iv, ConditionalSteering), "expected a conditional intervention"
        return iv
    return fit(lm, args, "grouped")


def evaluate(lm: Any, test: dict[str, PromptSet], iv: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Refusal rate per set and first-token KL on harmless/lookalike for one condition."""
    names = list(test)
    allp = test[names[0]]
    for name in names[1:]:
        allp = allp + test[name]
    res = evaluate_refusal(lm, allp, intervention=iv, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    out: dict[str, Any] = {}
    start = 0
    for name in names:
        n = len(test[name])
        out[name] = rate(sum(res.refused[start:start + n]), n)
        start += n
    out["by_style"] = res.by_style
    for name in ("harmless", "lookalike"):
        out[f"kl_{name}"] = float(first_token_kl(lm, test[name].texts, iv).mean()) if iv is not None else 0.0
    out["examples"] = {name: res.generations[i] for name, i in (("harmful", 0), ("harmless", len(test["harmful"])))}
    return out


def gate_rates(lm: Any, iv: ConditionalSteering, test: dict[str, PromptSet]) -> dict[str, Any]:
    """How often the probe fires on each test set."""
    p = iv.probe
    out = {}
    for name in test:
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
    ap.add_argument("--public", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"),
                    help="folder of the public data sets (skipped when absent)")
    ap.add_argument("--n-public", type=int, default=100, help="prompts per public held-out set")
    ap.add_argument("--compare-cv", action="store_true",
                    help="also fit with cv=random (random folds) and score it beside the default grouped folds")
    ap.add_argument("--public-round", type=int, default=1,
                    help="which disjoint public sample to score (0 was looked at while developing; see public_sets)")
    args = ap.parse_args()
    torch.manual_seed(0)
    lm = load_model("default", device="cpu")
    iv = fit_or_load(lm, args)
    test: dict[str, PromptSet] = {s: load_builtin(s, "test") for s in SETS}
    test.update(public_sets(Path(args.public), args.n_public, args.public_round))
    shown = [s for s in (*SETS, *EXT_SETS) if s in test]
    conditions: dict[str, Any] = {"baseline": None, "unconditional": ActivationAddition(iv.vector, iv.layers, iv.coefficient, iv.component),
                  "conditional": iv}
    if args.compare_cv:
        conditions["conditional_random_cv"] = fit(lm, args, "random")
    wanted = args.conditions.split(",") + (["conditional_random_cv"] if args.compare_cv else [])
    results = {}
    for name, cond in conditions.items():
        if name not in wanted:
            continue
        t = time.perf_counter()
        results[name] = evaluate(lm, test, cond, args)
        results[name]["seconds"] = time.perf_counter() - t
        print(f"[{name} done in {results[name]['seconds']:.0f}s] " +
              " ".join(f"{s} {fmt(results[name][s])}" for s in shown), flush=True)
    print(f"\nHeld-out prompts (never used for choices); greedy {args.max_new_tokens} tokens; refusal = phrase detector; "
          "95% Wilson CIs; ext_* are public sets written by others")
    print(f"{'condition':<14} " + " ".join(f"{s:<30}" for s in shown) + f" {'KL harmless':>11} {'KL lookalike':>12}")
    for name, r in results.items():
        print(f"{name:<14} " + " ".join(f"{fmt(r[s]):<30}" for s in shown) + f" {r['kl_harmless']:>11.4f} {r['kl_lookalike']:>12.4f}")
    summary: dict[str, Any] = {name: {**{s: r[s].as_dict() for s in shown}, "kl_harmless": r["kl_harmless"],
                                      "kl_lookalike": r["kl_lookalike"], "seconds": r["seconds"]} for name, r in results.items()}
    for name in results:
        gated_iv = conditions[name]
        if not isinstance(gated_iv, ConditionalSteering):
            continue
        gates = gate_rates(lm, gated_iv, test)
        label = "gate fires" if name == "conditional" else f"gate ({name.removeprefix('conditional_')})"
        print(f"{label:<14} " + " ".join(f"{fmt(gates[s]):<30}" for s in shown))
        summary[name]["gate"] = {s: g.as_dict() for s, g in gates.items()}
        summary[name]["off_branch"] = getattr(gated_iv, "off", "none")
        print(f"{name}: steer layer {list(gated_iv.layers)} x {gated_iv.coefficient}, probe layers "
              f"{list(gated_iv.probe.layers)} ({gated_iv.probe.pooling.kind} pooling), threshold {gated_iv.threshold:.3f}")
    style_keys = list(dict.fromkeys(k for r in results.values() for k in r["by_style"]))
    print("\nBuilt-in test split per label/style (lookalikes apart), refusal rate with 95% Wilson CIs:")
    print(f"{'label/style':<20} " + " ".join(f"{name:<30}" for name in results))
    for key in style_keys:
        print(f"{key:<20} " + " ".join(f"{fmt(r['by_style'][key]):<30}" for r in results.values()))
    for name, r in results.items():
        summary[name]["by_style"] = {k: v.as_dict() for k, v in r["by_style"].items()}
    for name in results:
        print(f"  {name} examples: {json.dumps(results[name]['examples'])}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
