"""CLI command of the pipeline area: ``alignscope run``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from alignscope.cli.common import JsonOpt, emit_json, handle_errors, out_console


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("run")(run_cmd)


@handle_errors
def run_cmd(
    config: Annotated[Path | None, typer.Argument(help="YAML run config (see examples/run_config.yaml); "
                                                  "omit it for the built-in refusal study on the embedded model.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory; rerunning into it resumes from finished stages.")]
    = Path("alignscope_run"),
    model: Annotated[str | None, typer.Option("--model", "-m", help="Override the config's model.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the refusal study: baseline, extract, select, intervene, evaluate (test split), report. Resumable."""
    from alignscope.pipeline.config import load_config
    from alignscope.pipeline.runner import run_pipeline

    cfg = load_config(config)
    if model is not None:
        cfg = cfg.model_copy(update={"model": model})
    result = run_pipeline(cfg, out, config_path=None if config is None else str(config), progress=True)
    summary = result.summary()
    if json_out:
        emit_json(summary)
        return
    _show(summary)


def _show(summary: dict[str, Any]) -> None:
    table = Table(title=escape(f"alignscope run: {summary['model']} (test split)"))
    for col in ("label", "n", "before", "95% CI", "after", "95% CI"):
        table.add_column(col)
    for label, n in summary["before"]["n"].items():
        b, a = summary["before"], summary["after"]
        table.add_row(escape(label), str(n), _pct(b["refusal_rate"][label]), _ci(b["ci95"][label]),
                      _pct(a["refusal_rate"].get(label)), _ci(a["ci95"].get(label)))
    look = summary.get("lookalike")
    if look and look.get("before") and look.get("after"):
        table.add_row("  lookalike", str(look["before"]["n"]), _pct(look["before"]["refusal_rate"]), _ci(look["before"]["ci95"]),
                      _pct(look["after"]["refusal_rate"]), _ci(look["after"]["ci95"]))
    out_console.print(table)
    if summary.get("kl"):
        out_console.print(f"first-token KL on harmless test prompts: mean {summary['kl']['mean']:.4f} (n={summary['kl']['n']})")
    if summary.get("gate"):
        fired = ", ".join(f"{name} {g['k']}/{g['n']} ({_pct(g['rate'])})" for name, g in summary["gate"].items())
        out_console.print(f"gate fired: {fired}", markup=False)
    out_console.print(f"intervention: {summary['intervention']['kind']}: {summary['intervention'].get('description') or ''}", markup=False)
    for name, path in summary["paths"].items():
        out_console.print(f"  {name}: {path}", markup=False)
    out_console.print(f"done in {summary['seconds']:.0f} s")


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * float(x):.1f}%"


def _ci(ci: Any) -> str:
    return "n/a" if not ci else f"{100 * ci[0]:.1f}-{100 * ci[1]:.1f}%"
