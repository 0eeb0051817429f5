"""Statistics of the built-in prompt sets: sizes, categories, splits and token lengths.

Prints, for each built-in set (harmful, harmless, lookalike):
* its size and the count per category x split;
* the mean length in tokens of the embedded model's tokenizer (SmolLM2-135M-Instruct), raw
  (``tokenizer(prompt)``) and inside the chat template, with 95% intervals;
* a harmful-vs-harmless (and lookalike) comparison of those lengths per split, as a ratio.

With ``--public``, the same token lengths for the public copies in ../shared/data when present
(AdvBench, refusal_direction), for comparison; nothing else needs them.

Run: .venv/bin/python benchmarks/dataset_stats.py [--public] [--json]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from transformers import AutoTokenizer

from alignscope.data.builtin_sets import BUILTIN_SETS, SPLITS, builtin_splits, load_builtin
from alignscope.data.prompts import PromptSet
from alignscope.data.public import load_advbench, load_refusal_direction
from alignscope.models.chat import encode_one
from alignscope.models.embedded import embedded_model_dir
from alignscope.stats import mean_ci

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def lengths(tok: object, texts: list[str]) -> dict[str, object]:
    raw = [len(tok(t)["input_ids"]) for t in texts]  # type: ignore[operator]
    chat = [len(encode_one(tok, t, chat=True)[0]) for t in texts]  # type: ignore[arg-type]
    words = [len(t.split()) for t in texts]
    out: dict[str, object] = {"n": len(texts)}
    for key, values in (("raw_tokens", raw), ("chat_tokens", chat), ("words", words)):
        mean, ci = mean_ci(values)
        out[key] = {"mean": round(mean, 2), "ci95": [round(ci[0], 2), round(ci[1], 2)], "min": min(values), "max": max(values)}
    return out


def category_table(name: str, prompts: PromptSet) -> list[str]:
    splits = builtin_splits(name)
    counts = Counter((p.category, splits[str(p.id)]) for p in prompts)
    categories = sorted({p.category or "" for p in prompts})
    rows = [f"  {'category':<16}{'train':>7}{'val':>6}{'test':>6}{'total':>7}"]
    for cat in categories:
        row = [counts[(cat, s)] for s in SPLITS]
        rows.append(f"  {cat:<16}{row[0]:>7}{row[1]:>6}{row[2]:>6}{sum(row):>7}")
    totals = [sum(counts[(c, s)] for c in categories) for s in SPLITS]
    shares = " / ".join(f"{100 * t / len(prompts):.0f}%" for t in totals)
    rows.append(f"  {'ALL':<16}{totals[0]:>7}{totals[1]:>6}{totals[2]:>6}{len(prompts):>7}   ({shares})")
    return rows


def fmt(stats: dict[str, object], key: str) -> str:
    s = stats[key]
    assert isinstance(s, dict)
    return f"{s['mean']:6.2f} [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--public", action="store_true", help="also measure the public copies in ../shared/data")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = parser.parse_args()

    tok = AutoTokenizer.from_pretrained(str(embedded_model_dir()))
    report: dict[str, object] = {"sets": {}, "by_split": {}, "public": {}}
    for name in BUILTIN_SETS:
        prompts = load_builtin(name)
        n_cat = len({p.category for p in prompts})
        print(f"\n== {name}: {len(prompts)} prompts, {n_cat} categories, label {sorted({str(x) for x in prompts.labels})}")
        print("\n".join(category_table(name, prompts)))
        stats = lengths(tok, prompts.texts)
        report["sets"][name] = stats  # type: ignore[index]
        print(f"  mean raw tokens {fmt(stats, 'raw_tokens')}   chat tokens {fmt(stats, 'chat_tokens')}   words {fmt(stats, 'words')}")

    print("\n== token length by split (raw tokens, mean [95% CI]); ratio = set / harmful")
    print(f"  {'split':<7}{'harmful':>24}{'harmless':>24}{'ratio':>7}{'lookalike':>24}{'ratio':>7}")
    for split in (*SPLITS, None):
        per = {name: lengths(tok, load_builtin(name, split).texts) for name in BUILTIN_SETS}
        report["by_split"][split or "all"] = per  # type: ignore[index]
        base = per["harmful"]["raw_tokens"]["mean"]  # type: ignore[index]
        cells = []
        for name in BUILTIN_SETS:
            cells.append(f"{fmt(per[name], 'raw_tokens'):>24}")
            if name != "harmful":
                cells.append(f"{per[name]['raw_tokens']['mean'] / base:>7.2f}")  # type: ignore[index]
        print(f"  {split or 'all':<7}" + "".join(cells))

    if args.public:
        print("\n== public sets (raw tokens, chat tokens)")
        sources = {
            "advbench": lambda: load_advbench(SHARED / "advbench" / "harmful_behaviors.csv"),
            "refusal_direction/harmful_train": lambda: load_refusal_direction(SHARED / "refusal_direction" / "harmful_train.json", "harmful"),
            "refusal_direction/harmless_train[:500]": lambda: load_refusal_direction(
                SHARED / "refusal_direction" / "harmless_train.json", "harmless", limit=500
            ),
        }
        for label, load in sources.items():
            try:
                stats = lengths(tok, load().texts)
            except Exception as exc:  # a missing copy is fine: report it and go on
                print(f"  {label:<40} unavailable ({exc})")
                continue
            report["public"][label] = stats  # type: ignore[index]
            print(f"  {label:<40} n={stats['n']:<5} raw {fmt(stats, 'raw_tokens')}   chat {fmt(stats, 'chat_tokens')}")

    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
