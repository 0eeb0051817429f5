"""CLI command ``alignscope bench``: one before/after table for a model and each intervention."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from alignscope.cli.common import (
    FlagError,
    JsonOpt,
    JudgeOptions,
    ModelOptions,
    emit_json,
    fit_intervention,
    handle_errors,
    judge_options,
    model_options,
    out_console,
    read_intervention,
)


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("bench")(bench_cmd)


def _suites(text: str) -> str:
    from alignscope.errors import InputError
    from alignscope.recipes.bench_data import parse_suites

    try:
        return ",".join(parse_suites(text))
    except InputError as exc:
        raise FlagError(str(exc)) from None




@handle_errors
@model_options(threads=True)
@judge_options
def bench_cmd(
    suite: Annotated[str, typer.Option("--suite", "-s", parser=_suites, help="Comma-separated suites: refusal, truthfulqa, factual, bias, "
                                       "toxicity, perplexity.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory: bench.json, bench.csv, bench_deltas.png, report.html.")],
    model: ModelOptions = ModelOptions(),
    intervention: Annotated[list[Path] | None, typer.Option(
        "--intervention", "-i", help="intervention.safetensors (any kind) to compare with the base model. Repeatable.")] = None,
    truthfulqa: Annotated[Path | None, typer.Option(help="TruthfulQA mc_task.json (default: the built-in honest-QA test split).")] = None,
    facts: Annotated[Path | None, typer.Option(help="Facts JSONL (subject, relation, prompt, target; default: the built-in set).")] = None,
    known: Annotated[Path | None, typer.Option(help="ROME's known_1000.json for the factual suite (instead of --facts).")] = None,
    bbq: Annotated[list[Path] | None, typer.Option(help="BBQ JSONL file (default: the built-in in-house set). Repeatable.")] = None,
    crows: Annotated[Path | None, typer.Option(help="CrowS-Pairs CSV (default: the built-in in-house set).")] = None,
    toxicity_prompts: Annotated[Path | None, typer.Option(help="Prompts that invite toxic text (default: the built-in set).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many items from each public file.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Greedy tokens per prompt (refusal, toxicity).")] = 48,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per batch.")] = 16,
    judge_flags: JudgeOptions = JudgeOptions(),
    json_out: JsonOpt = False,
) -> None:
    """Before/after table: each suite's metrics (n, value, 95% interval) for the model and each intervention, with paired tests."""
    from alignscope.recipes.bench import Settings, run_bench
    from alignscope.recipes.bench_data import BenchFiles, load_bench_data
    from alignscope.reports.bench import write_bench_outputs

    suites = tuple(suite.split(","))
    files = BenchFiles(truthfulqa, facts, known, tuple(bbq or ()), crows, toxicity_prompts, limit)
    data = load_bench_data(suites, files)
    judge = judge_flags.build()
    paths = list(intervention or [])
    ivs = [read_intervention(p) for p in paths]
    lm = model.load()
    named: list[tuple[str, Any]] = []
    for path, iv in zip(paths, ivs, strict=True):
        fit_intervention(iv, lm, path)
        assert iv is not None
        named.append((_name(path, lm.name, [n for n, _ in named]), iv))
    result = run_bench(lm, named, data, Settings(max_new_tokens=max_new_tokens, batch_size=batch_size, judge=judge), progress=True)
    extra = {"settings": {"max_new_tokens": max_new_tokens, "batch_size": batch_size, "decoding": "greedy", "seed": 0},
             "intervention_files": [str(p) for p in paths]}
    written = write_bench_outputs(out, result, extra)
    payload = result.to_json()
    if json_out:
        emit_json({"models": payload["models"], "suites": payload["suites"], "deltas": payload["deltas"], "notes": payload["notes"],
                   "files": {k: str(v) for k, v in written.items()}})
        return
    _show(payload, written)


def _name(path: Path, model: str, taken: list[str]) -> str:
    """The intervention's column name: its path as given (a number added when it repeats)."""
    name, k = str(path), 2
    while name in taken or name == model:
        name, k = f"{path}#{k}", k + 1
    return name


def _show(payload: dict[str, Any], written: dict[str, Path]) -> None:
    models = payload["models"]
    table = Table(title="bench")
    for col in ("suite", "metric", *models):
        table.add_column(escape(col))
    for suite, metrics in payload["suites"].items():
        for metric, per in metrics.items():
            cells = []
            for m in models:
                v = per[m]
                cell = f"{v['value']:.3g} [{v['ci95'][0]:.3g}, {v['ci95'][1]:.3g}] n={v['n']}"
                d = payload["deltas"].get(m, {}).get(suite, {}).get(metric)
                if d is not None:
                    cell += f"\nΔ {d['diff']:+.3g} p={d['p']:.2g}"
                cells.append(cell)
            table.add_row(escape(suite), escape(metric), *(escape(c) for c in cells))
    out_console.print(table)
    for suite, note in payload["notes"].items():
        out_console.print(f"{suite}: {note}", markup=False)
    out_console.print(f"wrote {', '.join(str(p) for p in written.values())}", markup=False)
