"""Shared CLI plumbing: model options, logging, error display and the ``--json`` last line."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from alignscope.errors import AlignscopeError
from alignscope.io import jsonable

err_console = Console(stderr=True)
out_console = Console()

F = TypeVar("F", bound=Callable[..., Any])

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="`default` (embedded SmolLM2-135M-Instruct), a HF hub id, or a local model directory.")]
DtypeOpt = Annotated[str, typer.Option(help="auto, float32, float16 or bfloat16 (auto: float32 on CPU, bfloat16 on GPU).")]
DeviceOpt = Annotated[str, typer.Option(help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")]
DeviceMapOpt = Annotated[str | None, typer.Option("--device-map", help="HF device_map for multi-GPU, e.g. auto.")]
FourBitOpt = Annotated[bool, typer.Option("--load-in-4bit", help="Quantise to 4-bit with bitsandbytes (needs CUDA).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last stdout line.")]
ChatOpt = Annotated[bool, typer.Option("--chat/--no-chat",
                                       help="Chat-template the prompts (--chat) or tokenise raw text as tokenizer(text) (--no-chat).")]


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr through rich; library loggers stay quiet below WARNING unless verbose."""
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=logging.WARNING, handlers=[RichHandler(console=err_console, show_path=False)],
                        format="%(message)s", force=True)
    logging.getLogger("alignscope").setLevel(level)
    for noisy in ("transformers", "transformer_lens", "torch"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def handle_errors(func: F) -> F:
    """Show deliberate errors as one clear line (exit 2) instead of a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AlignscopeError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


def emit_json(payload: dict[str, Any]) -> None:
    """Write ``payload`` as one compact JSON line on stdout (always the last line)."""
    sys.stdout.flush()
    sys.stdout.write(json.dumps(jsonable(payload), ensure_ascii=False) + "\n")
    sys.stdout.flush()


def load_from_options(model: str, dtype: str = "auto", device: str = "auto", device_map: str | None = None,
                      load_in_4bit: bool = False, threads: int | None = None) -> Any:
    """Load the model the shared CLI options name (``--threads`` sets torch's CPU threads first)."""
    from alignscope.models.loader import load_model

    if threads:
        import torch

        torch.set_num_threads(threads)
    return load_model(model, dtype=dtype, device=device, device_map=device_map, load_in_4bit=load_in_4bit)
