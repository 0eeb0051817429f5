"""The validated run configuration of ``alignscope run`` (YAML), with field-naming errors.

Every section is optional; an empty file (or no file) is the built-in refusal study on the
embedded model. Unknown keys are errors, so a typo never silently falls back to a default.

Sections that configure a library call embed that call's config dataclass (:func:`embeds`):
``select`` takes the fields of :class:`~alignscope.steering.selection.SelectionConfig`,
``intervene`` those of :class:`~alignscope.recipes.conscience.ConscienceConfig` and
``evaluate.judge`` those of :class:`~alignscope.evals.judge.JudgeConfig`, with their types,
bounds and defaults; a field added there is a key here, with errors naming ``section.field``.

Schema (defaults shown)::

    model: default            # `default`, a HF hub id or a local model directory
    dtype: auto               # auto, float32, float16, bfloat16
    device: auto              # auto, cpu, cuda, cuda:N, mps
    seed: 0
    chat: true                # chat template on every prompt
    data:
      harmful: builtin:harmful      # builtin:NAME (fixed splits), or a file or hf:NAME[:SPLIT] (seeded 50/20/30 split)
      harmless: builtin:harmless
      lookalike: builtin:lookalike  # harmless prompts that look harmful; null to skip
      n_train: null                 # cap per set and split (null: all)
      n_val: null
      n_test: null
    extract:
      component: resid_pre          # resid_pre, resid_mid, resid_post
      positions: post               # post (post-instruction tokens), last, or offsets like -1,-2
      batch_size: 16
    select:
      kl_threshold: 0.1             # drop candidates whose ablation moves harmless next tokens more
      prune_last_fraction: 0.2      # drop the last 20% of layers
      induce_min: 0.0               # drop candidates whose addition leaves the harmless refusal log-odds at or below
                                    # the reference plus this margin
      induce_relative_to: harmful   # the reference: harmful (unsteered harmful score), harmless, absolute (0)
      positions: [-1, -2]           # extracted positions to score (null: all); each candidate costs 3 forward passes
      layer_stride: 3               # score every k-th layer
      n_harmful: 16                 # val prompts used to score candidates
      n_harmless: 16
      batch_size: 16
    intervene:                      # null: the steering search's own default
      kind: conditional             # conditional (probe-gated, selective), addition, ablation
      steer_layers: null            # candidate layers for the refusal-mode vector
      coefficients: null            # candidate coefficients, tried in increasing order
      probe_layer_sets: null        # candidate condition-probe layer sets, e.g. [[16], [18, 22]]
      hard_negative_weights: null   # candidate weights of lookalike negatives relative to harmless ones
      pooling: null                 # span_post (user message + post-instruction tokens), span (user message) or tail
      l2: null                      # L2 penalty of the logistic probe
      folds: null                   # probe cross-validation folds
      max_fpr: null                 # out-of-fold false-positive rate allowed for the gate in each negative group
      off_branch: null              # ablate (remove the vector's direction where the gate is off) or none
      target_refusal: null          # val refusal rate at which the coefficient search stops
      refusal_prefix: null          # the completion that starts a refusal
      compliance_prefix: null       # the completion that starts compliance
      n_vector_prompts: null        # train prompts per class for the behaviour vector
      max_new_tokens: null          # tokens generated per prompt while searching
      batch_size: 16
    evaluate:
      max_new_tokens: 32
      batch_size: 16
      refusal_phrases: null         # list of phrases (null: the built-in list)
      compare: []                   # also evaluate unconditional baselines: addition, ablation
      judge: null                   # {base_url, model, api_key_env, timeout, max_retries, backoff, max_backoff}:
                                    # optional LLM judge
    report:
      n_examples: 8

Example:
    >>> cfg = load_config(None)
    >>> cfg.model, cfg.evaluate.max_new_tokens
    ('default', 32)
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from alignscope.errors import InputError
from alignscope.evals.judge import JudgeConfig
from alignscope.recipes.conscience import ConscienceConfig
from alignscope.steering.selection import SelectionConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    library: ClassVar[type | None] = None
    """The library config dataclass this section embeds (see :func:`embeds`)."""

    def library_kwargs(self) -> dict[str, Any]:
        """This section's values of the embedded library config's fields (a null means its default)."""
        if self.library is None:
            return {}
        names = {f.name for f in dataclasses.fields(self.library)}
        return {k: v for k, v in self if k in names and v is not None}


S = TypeVar("S", bound=_Section)


def embeds(library: type, *, exclude: Collection[str] = (), nullable: bool = False) -> Callable[[type[S]], type[S]]:
    """Give a section every field of the library dataclass ``library`` that it does not declare or ``exclude``.

    Each field keeps the library's type, bounds (``Annotated[..., Field(...)]``) and default, so a
    field added to the library config is a YAML key at once, with errors that name
    ``section.field``. ``nullable``: every embedded field defaults to null, meaning "the
    library's default". Fields the section declares itself win (a different YAML default, or a
    pipeline-only key); ``exclude`` names library fields the run sets from elsewhere.
    """

    def wrap(cls: type[S]) -> type[S]:
        hints = typing.get_type_hints(library, include_extras=True)
        added: dict[str, Any] = {}
        for f in dataclasses.fields(library):
            if f.name in cls.model_fields or f.name in exclude:
                continue
            if nullable:
                added[f.name] = (hints[f.name] | None, None)
            elif f.default is not dataclasses.MISSING:
                added[f.name] = (hints[f.name], f.default)
            else:
                added[f.name] = (hints[f.name], ...)
        model = create_model(cls.__name__, __base__=cls, __module__=cls.__module__, __doc__=cls.__doc__, **added)
        model.library = library
        return model

    return wrap


class DataConfig(_Section):
    """Prompt sources and split caps."""

    harmful: str = "builtin:harmful"
    harmless: str = "builtin:harmless"
    lookalike: str | None = "builtin:lookalike"
    n_train: int | None = Field(default=None, ge=1)
    n_val: int | None = Field(default=None, ge=1)
    n_test: int | None = Field(default=None, ge=1)


class ExtractConfig(_Section):
    """Where difference-in-means candidates are read."""

    component: Literal["resid_pre", "resid_mid", "resid_post"] = "resid_pre"
    positions: str = "post"
    batch_size: int = Field(default=16, ge=1)


@embeds(SelectionConfig, exclude=("max_layer_frac", "chat"))
class SelectConfig(_Section):
    """Candidate filtering and scoring (the refusal-direction method).

    Embeds :class:`~alignscope.steering.selection.SelectionConfig` (``kl_threshold``,
    ``induce_min``, ``induce_relative_to``, ``batch_size``, and any field added to it), except
    ``max_layer_frac`` (written here as ``prune_last_fraction``) and ``chat`` (the run's).
    """

    prune_last_fraction: float = Field(default=0.2, ge=0, lt=1)
    positions: list[int] | None = Field(default_factory=lambda: [-1, -2])
    layer_stride: int = Field(default=3, ge=1)
    n_harmful: int = Field(default=16, ge=1)
    n_harmless: int = Field(default=16, ge=1)

    def selection(self, chat: bool) -> SelectionConfig:
        """The library config: this section's fields plus the run's ``chat``."""
        return SelectionConfig(**self.library_kwargs(), max_layer_frac=1.0 - self.prune_last_fraction, chat=chat)


@embeds(ConscienceConfig, exclude=("seed",), nullable=True)
class InterveneConfig(_Section):
    """The search for the intervention that is saved and evaluated.

    ``conditional`` runs :func:`alignscope.recipes.conscience.fit_conscience`; the section
    embeds its :class:`~alignscope.recipes.conscience.ConscienceConfig` (every field but
    ``seed``, which is the run's), each null by default: a null field keeps that search's own
    default. ``addition``/``ablation`` use the selected direction (and the first coefficient).
    """

    kind: Literal["conditional", "addition", "ablation"] = "conditional"
    batch_size: int = Field(default=16, ge=1)

    def conscience(self, seed: int) -> ConscienceConfig:
        """The search's config: the fields set here plus the run's ``seed``."""
        return ConscienceConfig(**self.library_kwargs(), seed=seed)


@embeds(JudgeConfig)
class JudgeSection(_Section):
    """An OpenAI-compatible LLM judge (embeds :class:`~alignscope.evals.judge.JudgeConfig`); the key is read
    from the environment variable named here."""

    def judge_config(self) -> JudgeConfig:
        """The library config."""
        return JudgeConfig(**self.library_kwargs())


class EvaluateConfig(_Section):
    """Behaviour evaluation on the test split."""

    max_new_tokens: int = Field(default=32, ge=1)
    batch_size: int = Field(default=16, ge=1)
    refusal_phrases: list[str] | None = None
    compare: list[Literal["addition", "ablation"]] = Field(default_factory=list)
    judge: JudgeSection | None = None


class ReportConfig(_Section):
    """Report options."""

    n_examples: int = Field(default=8, ge=0)


class RunConfig(_Section):
    """The whole run."""

    model: str = "default"
    dtype: str = "auto"
    device: str = "auto"
    seed: int = 0
    chat: bool = True
    data: DataConfig = DataConfig()
    extract: ExtractConfig = ExtractConfig()
    select: SelectConfig = SelectConfig()
    intervene: InterveneConfig = InterveneConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    report: ReportConfig = ReportConfig()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the manifest records)."""
        return self.model_dump(mode="json")


def _allowed_fields(loc: tuple[Any, ...], root: type[BaseModel]) -> list[str]:
    model: type[BaseModel] = root
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return list(model.model_fields)


def to_input_error(exc: ValidationError, source: str, root: type[BaseModel]) -> InputError:
    """One clear line for a pydantic error of a config whose top-level model is ``root``: file, dotted field, what is allowed."""
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    field = ".".join(str(p) for p in loc) or "<root>"
    if err["type"] == "extra_forbidden":
        message = f"unknown field; allowed fields here: {', '.join(_allowed_fields(loc, root))}"
    else:
        message = f"{err['msg']} (got {err.get('input')!r})"
    more = len(exc.errors()) - 1
    return InputError(message + (f"; and {more} more problem(s)" if more else ""), path=source, field=field)


def parse_config(data: Any, source: str = "<config>") -> RunConfig:
    """Validate a parsed YAML mapping (None means all defaults)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping of sections at the top level, got {type(data).__name__}", path=source)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise to_input_error(exc, source, RunConfig) from None


def load_config(path: str | Path | None) -> RunConfig:
    """Read and validate a YAML run config; ``None`` gives the built-in refusal study.

    Raises:
        InputError: missing file, invalid YAML (with line), or a bad field; the message names
            the file, the dotted field and what is allowed.
    """
    if path is None:
        return RunConfig()
    return parse_config(read_yaml(Path(path)), str(path))


def read_yaml(file: Path) -> Any:
    """A YAML file's content; a missing file, bad UTF-8 or bad YAML (with its line) is an :class:`InputError`."""
    if not file.is_file():
        raise InputError("config file does not exist", path=file)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise InputError("invalid UTF-8; save the config as UTF-8", path=file) from None
    except RecursionError:
        raise InputError("invalid YAML: nested deeper than the parser allows", path=file) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(f"invalid YAML: {getattr(exc, 'problem', exc)}", path=file,
                         line=None if mark is None else mark.line + 1) from None
    return data
