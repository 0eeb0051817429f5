"""CLI commands of the circuits area: ``patch``, ``trace`` and ``ablate``.

Prompts are tokenised raw (exactly ``tokenizer(text)``) unless ``--chat``. With ``--json`` the last
stdout line is one JSON object; ``seconds`` is the sweep alone (model load excluded). With several
pairs (``--pairs``) the JSON holds the mean over pairs and the per-pair data go to ``--out``.
With ``--intervention FILE`` the intervention is attached to the bridge for the whole analysis, so
clean, corrupt and patched runs are all of the steered model (see :mod:`alignscope.circuits.replay`
for how patches and the intervention's hooks meet on one site).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from alignscope.circuits.patching import PATCH_COMPONENTS
from alignscope.cli.common import (
    ChatOpt,
    InterventionOpt,
    JsonOpt,
    ModelOptions,
    component_parser,
    emit_json,
    fit_intervention,
    handle_errors,
    model_options,
    out_console,
    read_intervention,
)

CleanOpt = Annotated[str | None, typer.Option("--clean", help="Clean prompt text.")]
CorruptOpt = Annotated[str | None, typer.Option("--corrupt", help="Corrupt prompt text (same number of tokens as --clean).")]
AnswerOpt = Annotated[str | None, typer.Option("--answer", help="Answer token, e.g. ' Paris' (single token).")]
FoilOpt = Annotated[str | None, typer.Option("--foil", help="Foil token, e.g. ' Rome' (single token).")]
PairsOpt = Annotated[Path | None, typer.Option("--pairs", help="JSONL file with fields clean, corrupt, answer, foil (and optional id).")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Output directory for PNG heatmaps, CSV summaries and JSON.")]
ABLATE_COMPONENTS = ("head", "attn_out", "mlp_out")
PatchSiteOpt = Annotated[str, typer.Option(parser=component_parser(PATCH_COMPONENTS),
                                           help="resid_pre, attn_out, mlp_out or head (also resid_mid, resid_post).")]
AblateSiteOpt = Annotated[str, typer.Option(parser=component_parser(ABLATE_COMPONENTS),
                                            help="Components to rank and ablate: head, attn_out or mlp_out.")]


def register(app: typer.Typer) -> None:
    """Add the circuits commands to ``app``."""
    app.command("patch")(patch_cmd)
    app.command("trace")(trace_cmd)
    app.command("ablate")(ablate_cmd)


def _pairs(pairs: Path | None, clean: str | None, corrupt: str | None, answer: str | None, foil: str | None) -> list[Any]:
    from alignscope.circuits.pairs import PromptPair, load_pairs
    from alignscope.errors import InputError

    if pairs is not None:
        if any(v is not None for v in (clean, corrupt)):
            raise InputError("give either --pairs or --clean/--corrupt, not both", field="pairs")
        return load_pairs(pairs)
    missing = [name for name, v in (("--clean", clean), ("--corrupt", corrupt), ("--answer", answer), ("--foil", foil)) if not v]
    if missing:
        raise InputError(f"missing {', '.join(missing)} (or pass --pairs FILE.jsonl)", field="pairs")
    assert clean and corrupt and answer and foil
    return [PromptPair(clean, corrupt, answer, foil)]


@handle_errors
@model_options()
def patch_cmd(
    clean: CleanOpt = None,
    corrupt: CorruptOpt = None,
    answer: AnswerOpt = None,
    foil: FoilOpt = None,
    pairs: PairsOpt = None,
    model: ModelOptions = ModelOptions(),
    site: PatchSiteOpt = "resid_pre",
    method: Annotated[str, typer.Option(help="activation (exact) or attribution (gradient estimate).")] = "activation",
    ig_steps: Annotated[int, typer.Option("--ig-steps", min=0, help="Attribution: integrated-gradients steps (0: plain gradient x delta).")] = 5,
    direction: Annotated[str, typer.Option(help="denoise (clean into corrupt) or noise (corrupt into clean).")] = "denoise",
    per_position: Annotated[bool, typer.Option("--per-position", help="head: patch each head at each position.")] = False,
    chat: ChatOpt = False,
    intervention: InterventionOpt = None,
    out: OutOpt = None,
    graph: Annotated[bool, typer.Option("--graph", help="Also write the circuit graph (JSON, HTML, GraphML) to --out.")] = False,
    edges: Annotated[bool, typer.Option("--edges", help="Also score component-to-component edges (EAP-IG) into circuit_edges.*.")] = False,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Nodes (or edges) kept in the graph.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """Activation or attribution patching of every layer x position (layer x head for head)."""
    from alignscope.circuits.runner import run_patch
    from alignscope.errors import InputError
    from alignscope.reports import circuits as outputs
    from alignscope.steering.interventions import intervention_scope

    if method not in ("activation", "attribution"):
        raise InputError(f"unknown method {method!r}; choose activation or attribution", field="method")
    if (graph or edges) and out is None:
        raise InputError("--graph and --edges write files: give --out DIR", field="out")
    items = _pairs(pairs, clean, corrupt, answer, foil)
    iv = read_intervention(intervention)
    lm = model.load()
    fit_intervention(iv, lm, intervention)
    with intervention_scope(lm, iv):
        run = run_patch(lm, items, site=site, method=method, ig_steps=ig_steps, direction=direction, per_position=per_position,
                        chat=chat, progress=not json_out, edges=edges)
    files = outputs.write_patch_outputs(run, out, graph=graph, top_k=top_k) if out is not None else []
    payload = {**run.mean.to_json(), "n_pairs": len(run.results), "model": lm.name, "files": [str(f) for f in files]}
    if json_out:
        emit_json(payload)
        return
    _print_patch(run, files)


@handle_errors
@model_options()
def trace_cmd(
    prompt: Annotated[str | None, typer.Option("--prompt", help="Factual prompt, e.g. 'The Eiffel Tower is located in the city of'.")] = None,
    subject: Annotated[str | None, typer.Option("--subject", help="Substring of the prompt to noise, e.g. 'The Eiffel Tower'.")] = None,
    answer: AnswerOpt = None,
    foil: FoilOpt = None,
    prompts: Annotated[Path | None, typer.Option("--prompts", help="JSONL or JSON list with prompt, subject [, answer, foil].")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Trace only the first N prompts of --prompts.")] = None,
    model: ModelOptions = ModelOptions(),
    kinds: Annotated[str, typer.Option(help="Comma-separated: resid (block outputs), attn, mlp.")] = "resid,attn,mlp",
    noise: Annotated[float, typer.Option(min=0.0, help="Noise std as a multiple of the embedding std.")] = 3.0,
    seed: Annotated[int, typer.Option(help="Seed of the first noise sample.")] = 0,
    samples: Annotated[int, typer.Option(min=1, help="Noise samples averaged.")] = 1,
    window: Annotated[int, typer.Option(min=1, help="Layers restored together for attn and mlp.")] = 10,
    resid_window: Annotated[int, typer.Option("--resid-window", min=1, help="Layers restored together for resid.")] = 1,
    chat: ChatOpt = False,
    intervention: InterventionOpt = None,
    out: OutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """ROME-style causal tracing: noise the subject, restore clean states, map the indirect effects."""
    from alignscope.circuits.pairs import TraceItem, load_trace_items
    from alignscope.circuits.runner import run_trace
    from alignscope.errors import InputError
    from alignscope.reports import circuits as outputs
    from alignscope.steering.interventions import intervention_scope

    if prompts is not None:
        items = load_trace_items(prompts)[:limit]
    elif prompt and subject:
        items = [TraceItem(prompt, subject, answer, foil)]
    else:
        raise InputError("give --prompt and --subject, or --prompts FILE", field="prompt")
    iv = read_intervention(intervention)
    lm = model.load()
    fit_intervention(iv, lm, intervention)
    with intervention_scope(lm, iv):
        run = run_trace(lm, items, kinds=[k.strip() for k in kinds.split(",") if k.strip()], noise=noise, seed=seed,
                        samples=samples, window=window, resid_window=resid_window, chat=chat, progress=not json_out)
    files = outputs.write_trace_outputs(run, out) if out is not None else []
    payload = {**run.mean_json(), "n_prompts": len(run.results), "model": lm.name, "files": [str(f) for f in files]}
    if json_out:
        emit_json(payload)
        return
    _print_trace(run, files)


@handle_errors
@model_options()
def ablate_cmd(
    clean: CleanOpt = None,
    corrupt: CorruptOpt = None,
    answer: AnswerOpt = None,
    foil: FoilOpt = None,
    pairs: PairsOpt = None,
    model: ModelOptions = ModelOptions(),
    site: AblateSiteOpt = "head",
    per_position: Annotated[bool, typer.Option("--per-position", help="attn_out/mlp_out: rank (layer, position) components.")] = False,
    method: Annotated[str, typer.Option(help="zero, mean or resample (the pair's corrupt prompt).")] = "mean",
    k: Annotated[int, typer.Option("--k", min=1, help="Largest number of top components ablated together.")] = 10,
    permutations: Annotated[int, typer.Option(min=0, max=10_000, help="Random component sets for the permutation test.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the random sets.")] = 0,
    chat: ChatOpt = False,
    intervention: InterventionOpt = None,
    out: OutOpt = None,
    graph: Annotated[bool, typer.Option("--graph", help="Also write the ranked components as a circuit graph.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Ablate the top-k components ranked by activation patching; test against random sets of the same size."""
    from alignscope.circuits.runner import run_ablation
    from alignscope.errors import InputError
    from alignscope.reports import circuits as outputs
    from alignscope.steering.interventions import intervention_scope

    if graph and out is None:
        raise InputError("--graph writes files: give --out DIR", field="out")
    items = _pairs(pairs, clean, corrupt, answer, foil)
    iv = read_intervention(intervention)
    lm = model.load()
    fit_intervention(iv, lm, intervention)
    with intervention_scope(lm, iv):
        run = run_ablation(lm, items, site=site, per_position=per_position, method=method, k=k, permutations=permutations,
                           seed=seed, chat=chat, progress=not json_out)
    files = outputs.write_ablation_outputs(run, out, graph=graph) if out is not None else []
    payload = {**run.to_json(), "model": lm.name, "files": [str(f) for f in files]}
    if json_out:
        emit_json(payload)
        return
    _print_ablation(run, files)


def _print_files(files: list[Path]) -> None:
    if files:
        out_console.print(f"wrote {len(files)} files to {files[0].parent}")


def _print_patch(run: Any, files: list[Path]) -> None:
    from rich.table import Table

    mean = run.mean
    out_console.print(f"[bold]{mean.component}[/] {mean.method} patching ({mean.direction}) on {run.model}, {len(run.results)} pair(s), "
                      f"{run.metric}: clean {mean.clean_metric:.3f}, corrupt {mean.corrupt_metric:.3f}; sweep {mean.seconds:.2f} s")
    table = Table("pair", "peak layer", "peak at", "peak effect", "flips", "gini (layers)", "top-5 share")
    for i, s in enumerate(run.summaries):
        e = s.effect
        table.add_row(str(s.id or i + 1), str(e.peak_layer), str(e.peak_label), f"{e.peak_effect:.3f}",
                      f"{e.n_flips}/{e.n_patches}", f"{e.gini_layers:.3f}", f"{e.top5_concentration:.3f}")
    out_console.print(table)
    _print_files(files)


def _print_trace(run: Any, files: list[Path]) -> None:
    from rich.table import Table

    table = Table("prompt", "kind", "answer", "clean", "noised", "peak layer", "peak token", "peak effect")
    for s in run.summaries:
        table.add_row(str(s.id), s.kind, repr(s.answer), f"{s.clean_metric:.3f}", f"{s.corrupt_metric:.3f}",
                      str(s.effect.peak_layer), str(s.effect.peak_label), f"{s.effect.peak_effect:.3f}")
    out_console.print(table)
    _print_files(files)


def _print_ablation(run: Any, files: list[Path]) -> None:
    res, perm = run.result, run.result.permutation
    out_console.print(f"[bold]{res.method}[/] ablation of the top {len(res.components)} {run.site} components on {run.model} "
                      f"({len(run.pairs)} pair(s)): {', '.join(c.label for c in res.components)}")
    for p in res.curve:
        lo, hi = p["retained_ci95"]
        out_console.print(f"  k={p['k']:>3}: metric {p['metric_mean']:.3f}, retained {p['retained_mean']:.3f} [{lo:.3f}, {hi:.3f}]")
    if perm["p_value"] is not None:
        out_console.print(f"effect of the top set {perm['effect']:.3f} vs random sets {perm['random_mean']:.3f} "
                          f"(sd {perm['random_sd']:.3f}, n={perm['n_permutations']}): z {perm['z'] if perm['z'] is None else round(perm['z'], 2)}, "
                          f"permutation p = {perm['p_value']:.4f}")
    _print_files(files)
