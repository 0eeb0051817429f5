"""CLI command of the evals area: ``alignscope eval``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from alignscope.cli.common import (
    ChatOpt,
    InterventionOpt,
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
    app.command("eval")(eval_cmd)


PromptsOpt = Annotated[list[str], typer.Option("--prompts", "-p", help="Prompt file (.jsonl/.json/.csv with prompt, label, category) "
                                               "or builtin:NAME[:SPLIT] (harmful, harmless, lookalike; train/val/test). Repeatable.")]


@handle_errors
@model_options()
@judge_options
def eval_cmd(
    prompts: PromptsOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory: eval.json, generations.jsonl, by_category.csv, "
                                                        "by_style.csv (prompts with a style), rates.png.")],
    model: ModelOptions = ModelOptions(),
    intervention: InterventionOpt = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Greedy tokens per prompt.")] = 48,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per generation batch.")] = 16,
    refusal_phrases: Annotated[Path | None, typer.Option(help="Text file of refusal phrases, one per line (default: built-in list).")] = None,
    chat: ChatOpt = True,
    kl: Annotated[bool, typer.Option("--kl/--no-kl", help="With --intervention: first-token KL(unsteered || steered) on harmless prompts.")] = True,
    judge_flags: JudgeOptions = JudgeOptions(),
    json_out: JsonOpt = False,
) -> None:
    """Measure refusal per label and per category (n, rate, 95% Wilson interval), optionally under an intervention."""
    from alignscope.data.sources import load_sources
    from alignscope.evals.behaviour import evaluate_refusal
    from alignscope.evals.refusal import load_phrases, phrase_detector
    from alignscope.reports.evals import write_eval_outputs

    pset = load_sources(prompts)
    detector = phrase_detector(load_phrases(refusal_phrases) if refusal_phrases else None)
    judge = judge_flags.build()
    iv = read_intervention(intervention)
    lm = model.load()
    fit_intervention(iv, lm, intervention)
    ev = evaluate_refusal(lm, pset, intervention=iv, chat=chat, max_new_tokens=max_new_tokens, batch_size=batch_size,
                          detector=detector, progress=True, judge=judge)
    extra: dict[str, Any] = {"model": lm.name, "prompts": list(prompts), "intervention_file": str(intervention) if intervention else None}
    if iv is not None and kl:
        extra["kl"] = _harmless_kl(lm, pset, iv, chat=chat, batch_size=batch_size)
    paths = write_eval_outputs(out, ev, extra)
    payload = {**ev.to_json(), **extra, "files": {k: str(v) for k, v in paths.items()}}
    if json_out:
        emit_json(payload)
        return
    _show(payload)


def _harmless_kl(lm: Any, pset: Any, iv: Any, *, chat: bool, batch_size: int) -> dict[str, Any] | None:
    from alignscope.evals.capability import first_token_kl, kl_summary

    harmless = pset.filter(label="harmless")
    if len(harmless) == 0:
        return None
    values = first_token_kl(lm, harmless.texts, iv, chat=chat, batch_size=batch_size, progress=True)
    return {"label": "harmless", **kl_summary(values)}


def _show(payload: dict[str, Any]) -> None:
    title = f"refusal: {payload['model']}" + (f" + {payload['intervention_file']}" if payload["intervention_file"] else "")
    table = Table(title=escape(title))
    for col in ("group", "n", "refused", "rate", "95% CI"):
        table.add_column(col)
    for label, n in payload["n"].items():
        lo, hi = payload["ci95"][label]
        table.add_row(f"[bold]{escape(label)}[/]", str(n), str(payload["k"][label]), f"{payload['refusal_rate'][label]:.1%}", f"{lo:.1%}-{hi:.1%}")
    for cat, row in payload["by_category"].items():
        lo, hi = row["ci95"]
        table.add_row(f"  {escape(cat)}", str(row["n"]), str(row["k"]), f"{row['refusal_rate']:.1%}", f"{lo:.1%}-{hi:.1%}")
    out_console.print(table)
    if payload.get("kl"):
        out_console.print(f"first-token KL on harmless prompts: mean {payload['kl']['mean']:.4f} (n={payload['kl']['n']})")
    out_console.print(f"wrote {', '.join(payload['files'].values())}", markup=False)
