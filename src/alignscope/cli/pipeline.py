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
    study: Annotated[str | None, typer.Option("--study", help="refusal (the default) or refusal_circuit; "
                                              "a config's `study:` key says the same.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the refusal study: baseline, extract, select, intervene, evaluate (test split), report. Resumable.

    With ``--study refusal_circuit`` (or ``study: refusal_circuit`` in the config): the refusal-circuit
    study (baseline, pairs, patching, rank, edges, ablation in generation, report).
    """
    from alignscope.pipeline.circuit_config import parse_circuit_config, study_of
    from alignscope.pipeline.config import parse_config, read_yaml

    data = None if config is None else read_yaml(config)
    source = "<built-in>" if config is None else str(config)
    if study_of(data, source, study) == "refusal_circuit":
        _run_circuit(parse_circuit_config(data, source, None if config is None else config.parent), out, model, config, json_out)
        return
    from alignscope.pipeline.runner import run_pipeline

    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "study"}
    cfg = parse_config(data, source)
    if model is not None:
        cfg = cfg.model_copy(update={"model": model})
    result = run_pipeline(cfg, out, config_path=None if config is None else str(config), progress=True)
    summary = result.summary()
    if json_out:
        emit_json(summary)
        return
    _show(summary)


def _run_circuit(cfg: Any, out: Path, model: str | None, config: Path | None, json_out: bool) -> None:
    from alignscope.pipeline.circuit_run import run_circuit_study

    if model is not None:
        cfg = cfg.model_copy(update={"model": model})
    summary = run_circuit_study(cfg, out, config_path=None if config is None else str(config)).summary()
    if json_out:
        emit_json(summary)
        return
    _show_circuit(summary)


def _show_circuit(summary: dict[str, Any]) -> None:
    base = ", ".join(f"{label} {_pct(v['refusal_rate'])} ({_ci(v['ci95'])}, n={v['n']})" for label, v in summary["baseline"].items())
    out_console.print(f"refusal-circuit study: {summary['model']}; baseline refusal: {base}", markup=False)
    table = Table(title="top components (patching effect on refusal log-odds)")
    for col in ("rank", "component", "effect", "95% CI", "causal fraction"):
        table.add_column(col)
    for i, row in enumerate(summary["top_components"][:10], start=1):
        table.add_row(str(i), escape(row["component"]), f"{row['effect']:.3f}", f"{row['ci95'][0]:.3f}..{row['ci95'][1]:.3f}",
                      f"{row['causal_fraction']:.2f}")
    out_console.print(table)
    out_console.print(f"first component ranks first in {_pct(summary['first_place_rate'])} of bootstrap resamples", markup=False)
    abl = Table(title="ablation in generation (held-out harmful prompts)")
    for col in ("k", "refusal", "95% CI", "random mean", "random 95%", "p", "harmless KL"):
        abl.add_column(col)
    for row in summary["ablation"]:
        abl.add_row(str(row["k"]), _pct(row["refusal_rate"]), _ci(row["ci95"]), _pct(row["random_mean"]), _ci(row["random_ci95"]),
                    f"{row['p_value']:.3f}", f"{row['kl_harmless']:.4f}")
    out_console.print(abl)
    for name, ref in summary["reference"].items():
        out_console.print(f"no ablation, {name.replace('_', ' ')}: {_pct(ref['refusal_rate'])} ({_ci(ref['ci95'])})", markup=False)
    for name, path in summary["paths"].items():
        out_console.print(f"  {name}: {path}", markup=False)
    out_console.print(f"done in {summary['seconds']:.0f} s")


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
