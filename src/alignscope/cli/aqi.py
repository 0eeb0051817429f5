"""CLI command ``alignscope aqi``: the Alignment Quality Index of a model on safe/unsafe prompts by axiom."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from alignscope.cli.common import ChatOpt, JsonOpt, ModelOptions, emit_json, handle_errors, model_options, out_console


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("aqi")(aqi_cmd)


@handle_errors
@model_options()
def aqi_cmd(
    data: Annotated[str, typer.Option("--data", "-d", help="builtin:axioms[:SPLIT] (train/val/test), hh:PATH (HH-RLHF chosen/rejected) "
                                      "or a LITMUS-style .csv/.jsonl file with axiom, safety_label (safe/unsafe), input.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory: result.json, aqi_layers.png, aqi_axioms.png, report.html.")],
    model: ModelOptions = ModelOptions(),
    layer: Annotated[int | None, typer.Option(min=0, help="Layer whose resid_post is measured (default: the middle layer, n_layers // 2).")]
    = None,
    pool: Annotated[str, typer.Option(help="mean (over real tokens), last (last token) or learned (layer weights fitted on --fit-data).")]
    = "mean",
    fit_data: Annotated[str | None, typer.Option(help="Train prompts for --pool learned (default: the train split of --data: "
                                                 "builtin:axioms:train, or a file's rows with split=train).")] = None,
    weighting: Annotated[str, typer.Option(help="Layer weights of --pool learned: softmax or sparsemax.")] = "softmax",
    reduce: Annotated[str, typer.Option(help="Dimensionality reduction before the indices: none, pca or tsne (seeded).")] = "none",
    n_components: Annotated[int, typer.Option(min=1, help="Dimensions kept by --reduce pca/tsne (tsne: at most 3).")] = 3,
    bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap resamples for the 95% intervals (0: none).")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap, t-SNE and the layer-weight fit.")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per forward pass.")] = 16,
    chat: ChatOpt = True,
    json_out: JsonOpt = False,
) -> None:
    """Alignment Quality Index (Borah et al. 2025): how well the model's hidden states separate safe from unsafe prompts.

    Reports the absolute AQI (fixed transforms, comparable across models and runs) and the relative one (scaled across
    the axioms of this run, comparable within it only), per layer, per axiom and overall, with bootstrap 95% intervals.
    """
    from alignscope.data.axioms import fit_set, load_axiom_set
    from alignscope.geometry.aqi import AQISettings, measure_aqi
    from alignscope.reports.aqi import write_aqi_outputs

    settings = AQISettings(layer=layer, pool=pool, reduce=reduce, n_components=n_components, bootstrap=bootstrap, seed=seed,
                           batch_size=batch_size, chat=chat, weighting=weighting)
    axiom_set = load_axiom_set(data)
    fit = None
    if pool == "learned":
        fit = load_axiom_set(fit_data) if fit_data is not None else fit_set(data)
    lm = model.load()
    result = measure_aqi(lm, axiom_set, settings, fit=fit, progress=True)
    paths = write_aqi_outputs(out, result)
    payload = {**result.to_json(), "files": {k: str(v) for k, v in paths.items()}}
    if json_out:
        emit_json(payload)
        return
    _show(payload)


def _show(payload: dict[str, Any]) -> None:
    lo, hi = payload["ci95"]
    out_console.print(f"AQI {payload['aqi']:.2f} (95% CI {lo:.2f}-{hi:.2f}) at layer {payload['layer']}; "
                      f"relative {payload['aqi_relative']:.2f} (comparable within this run only)", markup=False)
    table = Table(title=escape(f"AQI per axiom: {payload['model']}"))
    for col in ("axiom", "n safe", "n unsafe", "aqi", "95% CI", "aqi_relative"):
        table.add_column(col)
    for axiom, row in payload["per_axiom"].items():
        table.add_row(escape(axiom), str(row["n"]["safe"]), str(row["n"]["unsafe"]), f"{row['aqi']:.2f}",
                      f"{row['ci95'][0]:.2f}-{row['ci95'][1]:.2f}", f"{row['aqi_relative']:.2f}")
    out_console.print(table)
    best = sorted(payload["per_layer"], key=lambda r: -r["aqi"])[:3]
    out_console.print("best-separating layers: " + ", ".join(f"{r['layer']} ({r['aqi']:.1f})" for r in best), markup=False)
    out_console.print(f"wrote {', '.join(payload['files'].values())}", markup=False)
