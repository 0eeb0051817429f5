"""Shared CLI plumbing: model options, component options, logging, error display and the ``--json`` last line."""

from __future__ import annotations

import inspect
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import wraps
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from alignscope.errors import AlignscopeError, SiteError, stage_of
from alignscope.io import atomic_write_text, jsonable
from alignscope.models.embedded import cache_root
from alignscope.sites import COMPONENTS, Component, parse_component

if TYPE_CHECKING:
    from alignscope.evals.judge import Judge
    from alignscope.models.loader import LoadedModel
    from alignscope.steering.interventions import HookIntervention

try:  # typer vendors click since 0.2x; older typer uses click's own context
    from typer._click.globals import get_current_context as _current_context
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import get_current_context as _current_context  # type: ignore[no-redef,assignment,unused-ignore]

err_console = Console(stderr=True)
out_console = Console()

F = TypeVar("F", bound=Callable[..., Any])

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="`default` (embedded SmolLM2-135M-Instruct), a HF hub id, or a local model directory.")]
DtypeOpt = Annotated[str, typer.Option(help="auto, float32, float16 or bfloat16 (auto: float32 on CPU, bfloat16 on GPU).")]
DeviceOpt = Annotated[str, typer.Option(help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")]
DeviceMapOpt = Annotated[str | None, typer.Option("--device-map", help="HF device_map for multi-GPU, e.g. auto.")]
FourBitOpt = Annotated[bool, typer.Option("--load-in-4bit", help="Quantise to 4-bit with bitsandbytes (needs CUDA).")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", min=1, help="torch CPU threads (default: torch's own choice).")]
_FLAGS = {"model": ModelOpt, "dtype": DtypeOpt, "device": DeviceOpt, "device_map": DeviceMapOpt, "load_in_4bit": FourBitOpt,
          "threads": ThreadsOpt}
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last stdout line.")]
InterventionOpt = Annotated[Path | None, typer.Option(
    "--intervention", "-i", help="intervention.safetensors (any kind: addition, ablation, clamp, conditional, mac) to apply while the model runs.")]
JudgeUrlOpt = Annotated[str | None, typer.Option(help="OpenAI-compatible base URL of an LLM judge, e.g. http://127.0.0.1:8000/v1.")]
JudgeModelOpt = Annotated[str | None, typer.Option(help="Model name to send to the judge.")]
JudgeKeyEnvOpt = Annotated[str, typer.Option(help="Environment variable holding the judge API key (never written anywhere).")]
JudgeTimeoutOpt = Annotated[float, typer.Option(min=0.1, help="Seconds per judge request.")]
JudgeRetriesOpt = Annotated[int, typer.Option(min=0, max=10, help="Retries per judge request (exponential backoff).")]
_JUDGE_FLAGS = {"judge_url": JudgeUrlOpt, "judge_model": JudgeModelOpt, "judge_key_env": JudgeKeyEnvOpt,
                "judge_timeout": JudgeTimeoutOpt, "judge_retries": JudgeRetriesOpt}
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
    """Show deliberate errors as one clear line (exit 2) and unexpected ones as one line plus a log (exit 1).

    An unexpected exception (a bug, or a failure deep inside torch) becomes one ``error:`` line
    naming the command, the stage it escaped from (:func:`alignscope.errors.in_stage`) and the
    exception type, and pointing at the full traceback, written to ``error.log`` in the command's
    output directory (its ``out`` option) or else under the cache directory. Finished stages are
    already on disk, so a rerun resumes after the fix. ``--verbose`` also prints the traceback.
    """

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AlignscopeError as exc:
            show_error(str(exc))
            raise typer.Exit(code=2) from None
        except (typer.Exit, typer.Abort, typer.exceptions.TyperException, KeyboardInterrupt):
            raise
        except Exception as exc:
            command = _command_path(func)
            log_path = _write_traceback(kwargs.get("out") or kwargs.get("out_dir"), command)
            stage = stage_of(exc)
            where = f" in stage {stage!r}" if stage else ""
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            show_error(f"internal error in `{command}`{where}: {type(exc).__name__}{': ' + first if first else ''} "
                       f"(full traceback in {log_path}; finished stages are kept, a rerun resumes)")
            if logging.getLogger("alignscope").isEnabledFor(logging.DEBUG):
                err_console.print(traceback.format_exc(), highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(code=1) from None

    wrapper.handles_errors = True  # type: ignore[attr-defined]  # what tests/pipeline/test_internal_errors.py checks on every command
    return wrapper  # type: ignore[return-value]


def _command_path(func: Callable[..., Any]) -> str:
    ctx = _current_context(silent=True)
    return ctx.command_path if ctx is not None else f"alignscope {func.__name__}"


def _write_traceback(out: Any, command: str) -> Path:
    """Write the current exception's traceback to ``OUT/error.log`` (else the cache's ``logs/``); return the path."""
    text = f"{command}\n{datetime.now(timezone.utc).isoformat()}\n\n{traceback.format_exc()}"
    candidates = []
    if isinstance(out, str | Path):
        candidates.append(Path(out) / "error.log")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    candidates.append(cache_root() / "logs" / f"error-{stamp}-{os.getpid()}.log")
    for path in candidates:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text)
            return path
        except OSError:
            continue
    return Path("(not written: no writable directory)")


def show_error(message: str) -> None:
    """Print ``message`` as the one ``error:`` line on stderr (shown verbatim, brackets included)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True)


class FlagError(typer.BadParameter):
    """A bad flag value found while parsing: one ``error:`` line naming the flag (exit 2), like every deliberate error."""

    def show(self, file: IO[Any] | None = None) -> None:
        show_error(self.format_message())


def emit_json(payload: dict[str, Any]) -> None:
    """Write ``payload`` as one compact JSON line on stdout (always the last line)."""
    sys.stdout.flush()
    sys.stdout.write(json.dumps(jsonable(payload), ensure_ascii=False) + "\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class ModelOptions:
    """The model a command loads and how: ``--model``, ``--dtype``, ``--device``, ``--device-map``,
    ``--load-in-4bit`` and ``--threads`` (see :func:`model_options`)."""

    model: str = "default"
    dtype: str = "auto"
    device: str = "auto"
    device_map: str | None = None
    load_in_4bit: bool = False
    threads: int | None = None

    def load(self) -> LoadedModel:
        """Load the model (``threads`` sets torch's CPU threads first)."""
        from alignscope.models.loader import load_model

        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        return load_model(self.model, dtype=self.dtype, device=self.device, device_map=self.device_map,
                          load_in_4bit=self.load_in_4bit)


def model_options(*, model: bool = True, device_map: bool = True, threads: bool = False,
                  device: str = "auto") -> Callable[[F], F]:
    """Declare the shared model flags once: the command takes one :class:`ModelOptions` parameter instead.

    ``--model`` takes the place of that parameter in ``--help``; the loading flags (``--threads``,
    ``--dtype``, ``--device``, ``--device-map``, ``--load-in-4bit``) come just before ``--json`` (or
    last). Flags switched off here keep their :class:`ModelOptions` defaults.

    Args:
        model: add ``--model`` (off where a command declares its own, e.g. a repeatable one).
        device_map: add ``--device-map`` and ``--load-in-4bit``.
        threads: add ``--threads``.
        device: the default of ``--device``.
    """
    defaults = ModelOptions(device=device)
    loading = (["threads"] if threads else []) + ["dtype", "device"] + (["device_map", "load_in_4bit"] if device_map else [])
    here = [_keyword("model", _FLAGS, defaults)] if model else []
    last = [_keyword(name, _FLAGS, defaults) for name in loading]
    return lambda func: _grouped(func, ModelOptions, here, last)


@dataclass(frozen=True)
class JudgeOptions:
    """The optional LLM judge: ``--judge-url``, ``--judge-model``, ``--judge-key-env``, ``--judge-timeout``
    and ``--judge-retries`` (see :func:`judge_options`)."""

    judge_url: str | None = None
    judge_model: str | None = None
    judge_key_env: str = "ALIGNSCOPE_JUDGE_API_KEY"
    judge_timeout: float = 30.0
    judge_retries: int = 3

    def build(self) -> Judge | None:
        """The judge (None when neither URL nor model is given).

        Raises:
            InputError: only one of ``--judge-url`` and ``--judge-model`` is given.
        """
        from alignscope.errors import InputError

        url, model = self.judge_url, self.judge_model
        if url is None and model is None:
            return None
        if url is None or model is None:
            raise InputError("the LLM judge needs both --judge-url and --judge-model", field="judge_url" if url is None else "judge_model")
        from alignscope.evals.judge import Judge, JudgeConfig

        return Judge(JudgeConfig(base_url=url, model=model, api_key_env=self.judge_key_env, timeout=self.judge_timeout,
                                 max_retries=self.judge_retries))


def judge_options(func: F) -> F:
    """Declare the judge flags once: the command takes one :class:`JudgeOptions` parameter, whose place in
    ``--help`` the five ``--judge-*`` flags take."""
    defaults = JudgeOptions()
    return _grouped(func, JudgeOptions, [_keyword(name, _JUDGE_FLAGS, defaults) for name in _JUDGE_FLAGS], [])


def _grouped(func: F, group: type, here: list[inspect.Parameter], last: list[inspect.Parameter]) -> F:
    """``func`` with its one ``group``-typed parameter replaced by typer flags that build it.

    ``here`` take that parameter's place; ``last`` go just before ``json_out`` (or at the end).
    Every parameter becomes keyword-only: typer passes keywords, and the flags land between
    parameters with and without defaults.
    """
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in inspect.signature(func, eval_str=True).parameters.values()]
    [slot] = [i for i, p in enumerate(params) if p.annotation is group]
    target = params[slot].name
    params[slot:slot + 1] = here
    tail = next((i for i, p in enumerate(params) if p.name == "json_out"), len(params))
    params[tail:tail] = last
    names = [p.name for p in here + last]

    @wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        kwargs[target] = group(**{name: kwargs.pop(name) for name in names})
        return func(**kwargs)

    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def _keyword(name: str, flags: dict[str, Any], defaults: Any) -> inspect.Parameter:
    """The typer parameter ``name`` (its annotation in ``flags``), defaulting to the field ``name`` of ``defaults``."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=flags[name], default=getattr(defaults, name))


def component_parser(allowed: Sequence[str] = COMPONENTS) -> Callable[[str], Component]:
    """A typer ``parser=`` that reads a component name; a bad one is a usage error (exit 2) naming the flag and ``allowed``."""

    def parse(text: str) -> Component:
        try:
            return parse_component(text, allowed)
        except SiteError as exc:
            raise FlagError(str(exc)) from None

    return parse


def read_intervention(path: Path | None) -> HookIntervention | None:
    """The ``--intervention`` file, read before any model loads (None without one); errors name the file and field."""
    if path is None:
        return None
    from alignscope.steering.intervention_io import load_intervention

    return load_intervention(path)


def fit_intervention(iv: HookIntervention | None, lm: LoadedModel, path: Path | None) -> None:
    """Check that ``iv`` fits ``lm`` (width, layers, sites); the error names ``path``, the field and both models.

    Both models: the one the file was built for (its ``model`` metadata) and the one loaded.
    """
    if iv is None:
        return
    from alignscope.errors import InputError
    from alignscope.steering.intervention_io import intervention_model, intervention_path

    try:
        iv.validate(lm)
    except (InputError, SiteError) as exc:
        file = intervention_path(path) if path is not None else None
        built = intervention_model(file) if file is not None else None
        which = f"built for model {built!r}, which does not fit the loaded model {lm.name!r}: " if built else ""
        raise InputError(which + str(exc), path=file, field="layers" if isinstance(exc, SiteError) else None) from None
