"""CLI commands of the alignment circuit: ``alignscope mac train`` and ``alignscope mac show``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from alignscope.cli.common import JsonOpt, ModelOptions, emit_json, handle_errors, model_options, out_console

mac_app = typer.Typer(help="The alignment circuit: a small trainable module that senses alignment axes and nudges the residual stream.",
                      no_args_is_help=True, rich_markup_mode=None)


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    mac_app.command("train")(train_cmd)
    mac_app.command("show")(show_cmd)
    app.add_typer(mac_app, name="mac")


@handle_errors
def train_cmd(
    config: Annotated[Path | None, typer.Argument(help="YAML config (see alignscope.pipeline.mac_config); omit it to train on the "
                                                  "embedded model and the built-in mixes.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory; rerunning into it resumes.")] = Path("alignscope_mac"),
    model: Annotated[str | None, typer.Option("--model", "-m", help="Override the config's model.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Train the circuit, LoRA alone and both; compare them with the base model and steering on held-out prompts; report."""
    from alignscope.pipeline.mac_config import load_mac_config
    from alignscope.pipeline.mac_run import run_mac, write_comparison
    from alignscope.recipes.mac_eval import axis_trajectories, sensor_trace
    from alignscope.reports.mac import write_mac_report

    cfg = load_mac_config(config)
    if model is not None:
        cfg = cfg.model_copy(update={"model": model})
    run = run_mac(cfg, out, progress=True)
    paths = write_comparison(run)
    traces, trajectories = [], None
    circuit = run.circuits.get("module") or next(iter(run.circuits.values()), None)
    if circuit is not None and run.lm is not None:
        from alignscope.data.builtin_sets import load_builtin

        k = cfg.compare.sensor_prompts
        prompts = load_builtin("harmful", split="test").texts[:k] + load_builtin("lookalike", split="test").texts[:k]
        traces = sensor_trace(run.lm, circuit, prompts)
        trajectories = axis_trajectories(run.lm, circuit, prompts)
    files = write_mac_report(run.out_dir, run.training, run.rows, traces, trajectories,
                             circuit.axis_names if circuit is not None else tuple(cfg.train.axes), run.model)
    summary = run.summary() | {"paths": {**{p.name: str(p) for p in paths}, **{k: str(v) for k, v in files.items()}}}
    if json_out:
        emit_json(summary)
        return
    _show(summary)


def _show(summary: dict[str, Any]) -> None:
    table = Table(title=escape(f"alignscope mac train: {summary['model']} (test splits)"))
    for col in ("row", "harmful", "harmless", "lookalike", "MC1", "MC2", "KL", "trainable %", "gen/HF"):
        table.add_column(col)
    for r in summary["comparison"]:
        ref = r["refusal"]
        table.add_row(escape(r["name"]), *(f"{100 * ref[k]['rate']:.1f}% (n={ref[k]['n']})" for k in ("harmful", "harmless", "lookalike")),
                      f"{r['mc1']['rate']:.3f}", f"{r['mc2']['mean']:.3f}", "" if r["kl"] is None else f"{r['kl']['mean']:.4f}",
                      "" if r["trainable_pct"] is None else f"{r['trainable_pct']:.3f}", "" if r["throughput_ratio"] is None
                      else f"{r['throughput_ratio']:.2f}")
    out_console.print(table)
    for name, path in summary["paths"].items():
        out_console.print(f"  {name}: {path}", markup=False)
    out_console.print(f"done in {summary['seconds']:.0f} s")


@handle_errors
@model_options()
def show_cmd(
    opts: ModelOptions,
    mac: Annotated[Path, typer.Option("--mac", help="A circuit file written by `mac train` (mac.safetensors).")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The prompt to read (chat-formatted).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where sensors.png goes.")] = Path("alignscope_mac_show"),
    json_out: JsonOpt = False,
) -> None:
    """Draw what the circuit senses on one prompt: per-token axis scores and gates (sensors.png)."""
    from alignscope.recipes.mac_eval import sensor_trace
    from alignscope.reports.mac import sensor_png
    from alignscope.steering.circuit import load_circuit

    circuit = load_circuit(mac)
    lm = opts.load()
    trace = sensor_trace(lm, circuit, [prompt])[0]
    path = sensor_png(out / "sensors.png", trace, circuit.axis_names)
    payload = {"prompt": prompt, "tokens": trace["tokens"], "axes": list(circuit.axis_names),
               "scores": trace["scores"].tolist(), "gates": trace["gates"].tolist(), "nudged_from": trace["nudged_from"],
               "png": str(path)}
    if json_out:
        emit_json(payload)
        return
    table = Table(title=escape(f"what the circuit senses (layer {circuit.layer})"))
    table.add_column("token")
    for name in circuit.axis_names:
        table.add_column(f"{name} score")
        table.add_column(f"{name} gate")
    for i, tok in enumerate(trace["tokens"]):
        cells = [escape(repr(tok))]
        for j in range(len(circuit.axis_names)):
            cells += [f"{float(trace['scores'][i, j]):+.2f}", f"{float(trace['gates'][i, j]):.2f}"]
        table.add_row(*cells)
    out_console.print(table)
    if trace["nudged_from"] > 0:
        out_console.print(f"  scope response: the nudges act from token {trace['nudged_from']} (the prompt's last) on", markup=False)
    out_console.print(f"  sensors: {path}", markup=False)
