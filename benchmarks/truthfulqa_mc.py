"""TruthfulQA MC1 and MC2 of the embedded model (SmolLM2-135M-Instruct), lm-evaluation-harness style.

Reads ../shared/data/truthfulqa/v1/mc_task.json (the classic 817 questions) with
:func:`alignscope.data.training.read_mc_task`, scores every
(question, choice) continuation with :func:`alignscope.evals.truthfulqa.evaluate_truthfulqa` (the
lm-eval QA primer, zero-shot, summed log-likelihoods; no intervention) and prints MC1 (accuracy with
n and a 95% Wilson interval) and MC2 (mean with n and a 95% interval), the number of sequences
scored and the wall time. When ``lm_eval`` is importable, the same continuations are also scored by
its ``HFLM.loglikelihood`` on the same weights and both sets of metrics and the largest
log-likelihood difference are printed; otherwise the output says it is not installed.

With ``--intervention FILE`` (repeatable) the same questions are scored again with the intervention active, and
the paired differences per question are printed with 95% intervals.

Run: .venv/bin/python benchmarks/truthfulqa_mc.py [--limit 817] [--batch-size 8] [--threads 1] [--device cpu]
     [--intervention F]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import torch

from alignscope.data.training import MCItem, read_mc_task
from alignscope.evals.truthfulqa import TARGET_DELIMITER, TruthfulQAResult, evaluate_truthfulqa, mc_context
from alignscope.models.loader import LoadedModel, load_model
from alignscope.stats import MeanCI
from alignscope.steering.intervention_io import load_intervention

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "truthfulqa" / "v1" / "mc_task.json"


def summary(label: str, result: TruthfulQAResult) -> str:
    r, m = result.mc1, result.mc2
    return (f"{label}: MC1 {r.rate:.4f} ({r.k}/{r.n}, 95% CI {r.ci95[0]:.4f}-{r.ci95[1]:.4f})   "
            f"MC2 {m.mean:.4f} (n={m.n}, 95% CI {m.ci95[0]:.4f}-{m.ci95[1]:.4f})")


def lm_eval_result(lm: LoadedModel, items: list[MCItem], batch_size: int, device: str) -> TruthfulQAResult:
    """The same metrics from lm-eval's own ``HFLM.loglikelihood`` on the same weights."""
    from lm_eval.api.instance import Instance  # optional third-party dependency
    from lm_eval.models.huggingface import HFLM

    hf = HFLM(pretrained=lm.source, batch_size=batch_size, device=device, dtype="float32")
    lists = [(it.mc1_choices, it.mc2_choices) for it in items]
    args = [(mc_context(it.question), TARGET_DELIMITER + c) for it, (c1, c2) in zip(items, lists, strict=True) for c in c1 + c2]
    lls = [ll for ll, _ in hf.loglikelihood([Instance("loglikelihood", {}, a, i) for i, a in enumerate(args)])]
    mc1, mc2, pos = [], [], 0
    for c1, c2 in lists:
        mc1.append(lls[pos:pos + len(c1)])
        mc2.append(lls[pos + len(c1):pos + len(c1) + len(c2)])
        pos += len(c1) + len(c2)
    return TruthfulQAResult.from_logliks(items, mc1, mc2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="mc_task.json (default: the v1 817 questions)")
    parser.add_argument("--limit", type=int, default=None, help="first N questions (default: all)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core machine)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--intervention", type=Path, action="append", default=[],
                        help="also score with this intervention file active (e.g. a trained mac.safetensors); repeatable")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    items = read_mc_task(args.data)[: args.limit]
    lm = load_model("default", device=args.device)
    n_seq = len({(it.question, c) for it in items for c in (*it.mc1_choices, *it.mc2_choices)})
    start = time.perf_counter()
    ours = evaluate_truthfulqa(lm, items, batch_size=args.batch_size, progress=True)
    wall = time.perf_counter() - start
    print(f"{lm.name}, {len(items)} questions of {args.data.name} ({args.data.parent.name}), {n_seq} continuations, "
          f"batch {args.batch_size}, {args.device}, {args.threads} thread(s)")
    print(summary("alignscope", ours) + f"   wall {wall:.1f} s")
    for path in args.intervention:
        start = time.perf_counter()
        steered = evaluate_truthfulqa(lm, items, load_intervention(path), batch_size=args.batch_size, progress=True)
        print(summary(f"with {path}", steered) + f"   wall {time.perf_counter() - start:.1f} s")
        d1 = [a - b for a, b in zip(steered.mc1_items, ours.mc1_items, strict=True)]
        d2 = [a - b for a, b in zip(steered.mc2_items, ours.mc2_items, strict=True)]
        print(f"  paired difference vs no intervention: MC1 {MeanCI.of(d1).mean:+.4f} (95% CI {MeanCI.of(d1).ci95[0]:+.4f} to "
              f"{MeanCI.of(d1).ci95[1]:+.4f})   MC2 {MeanCI.of(d2).mean:+.4f} (95% CI {MeanCI.of(d2).ci95[0]:+.4f} to "
              f"{MeanCI.of(d2).ci95[1]:+.4f})")
    if importlib.util.find_spec("lm_eval") is None:
        print("lm_eval is not installed here: no comparison with lm-evaluation-harness")
        return
    start = time.perf_counter()
    theirs = lm_eval_result(lm, items, args.batch_size, args.device)
    wall = time.perf_counter() - start
    print(summary("lm_eval   ", theirs) + f"   wall {wall:.1f} s")
    diff = max(abs(a - b) for x, y in zip(ours.mc2_logliks, theirs.mc2_logliks, strict=True) for a, b in zip(x, y, strict=True))
    print(f"largest |log-likelihood difference| over MC2 choices: {diff:.2e}")


if __name__ == "__main__":
    main()
