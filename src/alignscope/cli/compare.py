"""CLI commands comparing models: ``deltas`` (one base-vs-aligned pair) and ``compare`` (a sweep over a model registry)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from alignscope.cli.common import JsonOpt, ModelOptions, component_parser, emit_json, handle_errors, model_options, out_console
from alignscope.errors import InputError


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("deltas")(deltas_cmd)
    app.command("compare")(compare_cmd)


@handle_errors
@model_options(model=False, device_map=False)
def deltas_cmd(
    base: Annotated[str, typer.Option("--base", help="The base model: `default`, `gemma3-270m`, a hub id or a local directory.")],
    data: Annotated[str, typer.Option("--data", help="hh:PATH or an HH-RLHF .jsonl/.jsonl.gz (chosen vs rejected transcripts), "
                                                     "or builtin:harm[:SPLIT] (chosen: harmless prompts, rejected: harmful).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (deltas.safetensors, deltas.json, plots, cache/).")],
    aligned: Annotated[str | None, typer.Option("--aligned", help="The aligned model (same tokenizer); default: the base model, "
                                                                  "which then needs --aligned-intervention.")] = None,
    aligned_intervention: Annotated[Path | None, typer.Option(
        "--aligned-intervention", help="intervention.safetensors applied while the aligned model runs (any kind).")] = None,
    svd_k: Annotated[int, typer.Option("--svd-k", min=0, help="SVD component of the per-text differences reported (0: first).")] = 0,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Use the first N texts of each group.")] = None,
    component: Annotated[str, typer.Option(parser=component_parser(("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")),
                                           help="Site component read.")] = "resid_post",
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    model: ModelOptions = ModelOptions(),
    json_out: JsonOpt = False,
) -> None:
    """Base-vs-aligned deltas per layer: mean differences, cosines, norms and the SVD of per-text differences."""
    from alignscope.cli.common import read_intervention
    from alignscope.data.text_groups import load_text_groups
    from alignscope.reports.deltas import write_deltas_files, write_deltas_summary
    from alignscope.steering.deltas import model_deltas

    start = time.perf_counter()
    aligned_name = aligned or base
    if aligned_name == base and aligned_intervention is None:
        raise InputError("the aligned model is the base model; pass another --aligned or an --aligned-intervention",
                         field="aligned")
    groups = load_text_groups(data, limit=limit)
    iv = read_intervention(aligned_intervention)
    base_lm = replace(model, model=base).load()
    aligned_lm = base_lm if aligned_name == base else replace(model, model=aligned_name).load()
    deltas = model_deltas(base_lm, aligned_lm, groups.chosen, groups.rejected, component=component, batch_size=batch_size,
                          progress=True, svd_k=svd_k, instruct_intervention=iv, cache_dir=out / "cache")
    aligned_label = aligned_lm.name + (f"+{aligned_intervention}" if aligned_intervention else "")
    write_deltas_files(out, deltas, base=base_lm.name, aligned=aligned_label, data_sha256=groups.sha256)
    payload = {"base": base_lm.name, "aligned": aligned_lm.name,
               "aligned_intervention": None if aligned_intervention is None else str(aligned_intervention),
               "data": groups.to_json(), **deltas.summary(), "out": str(out), "seconds": round(time.perf_counter() - start, 3)}
    write_deltas_summary(out, payload)
    if json_out:
        emit_json(payload)
        return
    out_console.print(f"{aligned_label} vs {base_lm.name}: {len(groups.chosen)} chosen, {len(groups.rejected)} rejected texts")
    out_console.print("layer  cos(chosen)  cos(rejected)  |delta| chosen  |delta| rejected  expl.var k")
    for row in payload["per_layer"]:
        ev = row["explained_variance_k"]
        out_console.print(f"{row['layer']:>5}  {row['cosine_chosen']:11.4f}  {row['cosine_rejected']:13.4f}  "
                          f"{row['delta_norm_chosen']:14.4f}  {row['delta_norm_rejected']:16.4f}  {ev if ev is None else f'{ev:10.4f}'}")
    out_console.print(f"peak layer {deltas.peak_layer}; files in {out}")


@handle_errors
def compare_cmd(
    registry: Annotated[Path, typer.Argument(help="Model registry (models.yaml).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (checkpoints, plots, summary.json, report.html).")],
    metrics: Annotated[str, typer.Option("--metrics", help="Comma-separated metrics to run (default: all registered).")] = "",
    executor: Annotated[str, typer.Option("--executor", help="local (default; one model at a time here) or ray (a Ray task per unit).")] = "local",
    resume: Annotated[bool, typer.Option("--resume", help="Reuse units whose stored fingerprint matches (the default).")] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="Delete stored units and cached hidden states, then run everything.")] = False,
    skip_done: Annotated[bool, typer.Option("--skip-done", help="Reuse every stored unit, whatever its fingerprint.")] = False,
    deltas_data: Annotated[str, typer.Option("--deltas-data", help="Texts of the deltas metric (the --data grammar of `deltas`).")]
    = "builtin:harm:test",
    svd_k: Annotated[int, typer.Option("--svd-k", min=0, help="SVD component reported by the deltas metric.")] = 0,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="First N texts of each group.")] = None,
    aqi_data: Annotated[str, typer.Option("--aqi-data", help="Prompts of the aqi metric (the --data grammar of `aqi`).")]
    = "builtin:axioms:test",
    aqi_bootstrap: Annotated[int, typer.Option("--aqi-bootstrap", min=0, help="Bootstrap resamples of the aqi metric's intervals.")]
    = 1000,
    aqi_chat: Annotated[bool | None, typer.Option("--aqi-chat/--aqi-no-chat", help="Chat-template the aqi prompts (default: where "
                                                  "the model's tokenizer has a chat template).")] = None,
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="Ray cluster address (default: start or join a local one).")]
    = None,
    json_out: JsonOpt = False,
) -> None:
    """Run metrics over every model of a registry, one model at a time, with checkpoints that resume."""
    from alignscope.pipeline.model_catalog import load_catalog
    from alignscope.pipeline.sweep import Executor, Mode, local_executor, run_sweep
    from alignscope.pipeline.sweep_metrics import METRICS, SweepSettings, parse_metrics
    from alignscope.reports.sweep import write_sweep_files

    if sum((resume, fresh, skip_done)) > 1:
        raise InputError("pass at most one of --resume, --fresh and --skip-done", field="mode")
    if executor not in ("local", "ray"):
        raise InputError(f"unknown executor {executor!r}; expected local or ray", field="executor")
    names = parse_metrics(metrics or ",".join(METRICS))
    catalog = load_catalog(registry)
    run: Executor = local_executor
    if executor == "ray":
        try:
            from alignscope.pipeline.ray_executor import ray_executor
        except ImportError:
            raise InputError("--executor ray needs Ray: pip install 'alignscope[ray]'", field="executor") from None
        run = ray_executor(address=ray_address)
    mode: Mode = "fresh" if fresh else "skip-done" if skip_done else "resume"
    result = run_sweep(catalog, names, out, settings=SweepSettings(deltas_data=deltas_data, svd_k=svd_k, limit=limit, aqi_data=aqi_data,
                                                                       aqi_bootstrap=aqi_bootstrap, aqi_chat=aqi_chat), mode=mode,
                       executor=run, executor_name=executor)
    payload = result.to_json()
    summary = {**payload, "skipped": result.skipped, "reused": [f"{u.key}/{u.metric}" for u in result.reused],
               "computed": [f"{u.key}/{u.metric}" for u in result.computed]}
    write_sweep_files(out, summary, result.records)
    if json_out:
        emit_json(payload)
        return
    out_console.print(f"{len(result.models)} models x {', '.join(names)} ({executor}): {len(result.computed)} units run, "
                      f"{len(result.reused)} reused, in {result.seconds:.1f}s")
    for key, reason in result.skipped.items():
        out_console.print(f"skipped {key}: {reason}")
    for key, by_metric in result.results().items():
        for metric, summ in by_metric.items():
            out_console.print(f"{key} / {metric}: {_headline(metric, summ)}")
    out_console.print(f"report: {out / 'report.html'}")


def _headline(metric: str, summary: dict[str, Any]) -> str:
    """One line per unit for the terminal."""
    if metric != "deltas":
        return ", ".join(f"{k} {v}" for k, v in summary.items() if isinstance(v, (int, float, str)))
    rows = summary["per_layer"]
    peak = next(r for r in rows if r["layer"] == summary["peak_layer"])
    return (f"vs {summary['base']}: peak layer {summary['peak_layer']} of {summary['n_layers']} "
            f"(|delta| {peak['delta_norm_chosen']:.3g}, cosine {peak['cosine_chosen']:.4f}), "
            f"max |delta| {max(r['delta_norm_chosen'] for r in rows):.3g} at layer "
            f"{max(rows, key=lambda r: r['delta_norm_chosen'])['layer']}")
