"""CLI commands for the steering area: ``edit`` (weight orthogonalisation) and ``directions`` (diff-in-means)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alignscope.cli.common import ChatOpt, JsonOpt, ModelOptions, component_parser, emit_json, handle_errors, model_options, out_console


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("edit")(edit_cmd)
    app.command("directions")(directions_cmd)


@handle_errors
@model_options(device_map=False, device="cpu")
def edit_cmd(
    ablate_direction: Annotated[Path, typer.Option("--ablate-direction", help="Safetensors file with a `direction` tensor of shape (d_model,).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory: a plain Hugging Face model (safetensors).")],
    model: ModelOptions = ModelOptions(),
    allow_inexact: Annotated[bool, typer.Option("--allow-inexact", help="Edit Gemma 2/3 anyway (post-sublayer norms make it approximate).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Orthogonalise a model's weights against a direction (weight-baked directional ablation) and save it."""
    from alignscope.steering.direction_io import load_direction
    from alignscope.steering.weight_edit import orthogonalize_to_dir

    lm = model.load()
    direction = load_direction(ablate_direction, d_model=lm.d_model)
    result = orthogonalize_to_dir(lm, direction.vector, out, allow_inexact=allow_inexact,
                                  provenance={"direction_file": str(ablate_direction), "direction_meta": direction.meta})
    payload = {**result.to_json(), "direction": str(ablate_direction)}
    if json_out:
        emit_json(payload)
        return
    out_console.print(f"edited {result.layers_edited} layers ({result.matrices_edited} matrices) of {result.model} -> {result.out}")
    if result.tied_unembedding_untied:
        out_console.print("the unembedding was tied to the embedding: it now has its own (unedited) copy")
    if not result.exact:
        out_console.print("[yellow]approximate edit: this architecture normalises sublayer outputs after projection[/]")
    out_console.print(f"load it with AutoModelForCausalLM.from_pretrained({str(result.out)!r})")


@handle_errors
@model_options(device_map=False)
def directions_cmd(
    positive: Annotated[Path, typer.Option("--positive", help="Prompt file of the positive set (e.g. harmful).")],
    negative: Annotated[Path, typer.Option("--negative", help="Prompt file of the negative set (e.g. harmless).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Direction file to write (.safetensors).")],
    layer: Annotated[int, typer.Option(help="Layer whose direction is saved.")],
    position: Annotated[int, typer.Option(help="Position saved, counted from the end (-1: last token).")] = -1,
    positions: Annotated[str, typer.Option(help="Positions to compute: post (post-instruction), last, or offsets like -1,-2.")] = "post",
    component: Annotated[str, typer.Option(parser=component_parser(), help="Site component read.")] = "resid_pre",
    model: ModelOptions = ModelOptions(),
    chat: ChatOpt = True,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    json_out: JsonOpt = False,
) -> None:
    """Difference-in-means of two prompt sets at every layer; save one (layer, position) as a direction file."""
    from alignscope.data.sources import load_source
    from alignscope.steering.direction_io import save_direction
    from alignscope.steering.directions import diff_in_means

    pos_set, neg_set = load_source(positive), load_source(negative)
    lm = model.load()
    md = diff_in_means(lm, pos_set, neg_set, component=component, positions=positions, chat=chat, batch_size=batch_size,
                       progress=True)
    vec = md.direction(layer, position)
    meta = {"model": lm.name, "layer": layer, "position": position, "method": "diff_in_means", "data_sha256": md.data_sha256,
            "component": component, "chat": chat}
    save_direction(out, vec, meta)
    norms = md.norms()[md.positions.index(position)].tolist()
    payload = {"out": str(out), "model": lm.name, "layer": layer, "position": position, "component": component,
               "n_positive": md.n_pos, "n_negative": md.n_neg, "norm": float(vec.norm()), "norms_by_layer": norms,
               "positions": list(md.positions), "data_sha256": md.data_sha256}
    if json_out:
        emit_json(payload)
        return
    out_console.print(f"direction at layer {layer}, position {position} (norm {float(vec.norm()):.3f}) -> {out}")
    out_console.print("norm by layer: " + " ".join(f"{x:.2f}" for x in norms))
