"""CLI command ``alignscope generate``: greedy continuations of prompts, optionally under an intervention.

With ``--json`` the last stdout line is ``{"model", "intervention", "generations": [{"prompt",
"generation", "n_tokens"}], "tokens_per_second", "seconds"}``; ``intervention`` is the file's kind
or null, ``seconds`` is the generation alone (model load excluded).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.markup import escape

from alignscope.cli.common import (
    ChatOpt,
    InterventionOpt,
    JsonOpt,
    ModelOptions,
    emit_json,
    fit_intervention,
    handle_errors,
    model_options,
    out_console,
    read_intervention,
)


def register(app: typer.Typer) -> None:
    """Add ``generate`` to ``app``."""
    app.command("generate")(generate_cmd)


@handle_errors
@model_options()
def generate_cmd(
    prompt: Annotated[list[str] | None, typer.Option("--prompt", help="Prompt text; repeatable.")] = None,
    prompts: Annotated[str | None, typer.Option("--prompts", help="Prompt source: builtin:NAME[:SPLIT], hf:NAME[:SPLIT] "
                                                "or a file (.jsonl/.json/.csv/.txt).")] = None,
    model: ModelOptions = ModelOptions(),
    intervention: InterventionOpt = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Greedy tokens per prompt.")] = 48,
    chat: ChatOpt = True,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per generation batch.")] = 16,
    json_out: JsonOpt = False,
) -> None:
    """Greedy generations (prompt -> continuation), with the intervention active when given."""
    from alignscope.errors import InputError

    if (prompt is None) == (prompts is None):
        raise InputError("give either --prompt TEXT (repeatable) or --prompts SOURCE", field="prompt")
    if prompts is not None:
        from alignscope.data.sources import load_source

        texts = load_source(prompts).texts
    else:
        texts = list(prompt or [])
    iv = read_intervention(intervention)
    lm = model.load()
    fit_intervention(iv, lm, intervention)
    payload = generate_payload(lm, texts, iv, chat=chat, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=not json_out)
    if json_out:
        emit_json(payload)
        return
    for row in payload["generations"]:
        out_console.print(f"[bold]{escape(row['prompt'])}[/] -> {escape(row['generation'])}")
    out_console.print(f"{len(payload['generations'])} prompt(s), {payload['tokens_per_second']:.1f} tokens/s "
                      f"({payload['seconds']:.2f} s)")


def generate_payload(lm: Any, texts: list[str], iv: Any, *, chat: bool, max_new_tokens: int, batch_size: int,
                     progress: bool) -> dict[str, Any]:
    """Generate and build the ``--json`` payload (seconds and tokens per second of the generation alone)."""
    from alignscope.evals.generation import generate_detailed

    start = time.perf_counter()
    gens = generate_detailed(lm, texts, chat=chat, max_new_tokens=max_new_tokens, batch_size=batch_size, intervention=iv,
                             progress=progress)
    seconds = time.perf_counter() - start
    n_tokens = sum(len(ids) for ids in gens.token_ids)
    rows = [{"prompt": p, "generation": g, "n_tokens": len(ids)} for p, g, ids in zip(texts, gens.texts, gens.token_ids, strict=True)]
    return {"model": lm.name, "intervention": None if iv is None else iv.kind, "generations": rows,
            "tokens_per_second": n_tokens / seconds if seconds > 0 else 0.0, "seconds": round(seconds, 4)}
