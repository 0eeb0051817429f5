"""The validated config of the refusal-circuit study (``alignscope run`` with ``study: refusal_circuit``).

Unknown keys are errors that name the field (:func:`~alignscope.pipeline.config.to_input_error`).

Schema (defaults shown)::

    study: refusal_circuit
    model: default               # `default` (the embedded model), a HF hub id or a local model directory
    dtype: auto
    device: auto
    seed: 0
    chat: true
    intervention: null           # an intervention file (any kind) active in every stage, e.g. a planted refusal
    pairs: builtin               # builtin (64 pairs, 8 categories, fixed rank/heldout splits) or a JSONL pair file
    baseline:
      harmful: builtin:harmful:test
      harmless: builtin:harmless:test
      n: 24                      # prompts per label (round-robin over categories; null: all)
    patching:
      method: exact              # exact (every component through the replay engine; fine on small models) or attribution
                                 # (gradient x delta of every component, then exact patching of the top `candidates`)
      candidates: 40
      kinds: [resid_pre, attn_out, mlp_out, head]   # what is patched (resid_pre: the heatmap only, never ranked)
      directions: [denoise, noise]
      n_pairs: null              # ranking pairs used (null: all of the rank split)
      max_batch_tokens: 4096
    rank:
      kinds: [attn_out, mlp_out, head]   # the components ranked and ablated
      direction: denoise         # denoise (does it induce refusal?) or noise (is it necessary? effects negated)
      top: 20
      threshold: 0.1             # a pair counts as causal for a component when its effect exceeds this
      n_boot: 1000
    ablation:
      ks: [1, 5, 10, 20]
      method: mean               # zero, mean (over harmless ranking prompts' tokens), resample, or direction (only each
                                 # component's own harmful-minus-harmless direction, set to the harmless mean's projection)
      n_random: 20               # random component sets of the same kinds per k
      max_new_tokens: 24
      batch_size: 24
      refusal_phrases: null
      components: null           # labels (attn_out@L3, mlp_out@L14, head@L3.H2) to ablate in this order instead of the ranking's
    report:
      n_examples: 6
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from alignscope.errors import InputError
from alignscope.pipeline.config import _Section, to_input_error

Kind = Literal["resid_pre", "attn_out", "mlp_out", "head"]
Ranked = Literal["attn_out", "mlp_out", "head"]
Direction = Literal["denoise", "noise"]


def _all_kinds() -> list[Kind]:
    return ["resid_pre", "attn_out", "mlp_out", "head"]


def _ranked_kinds() -> list[Ranked]:
    return ["attn_out", "mlp_out", "head"]


def _directions() -> list[Direction]:
    return ["denoise", "noise"]


class BaselineSection(_Section):
    """Prompts of the baseline refusal rates (generation)."""

    harmful: str = "builtin:harmful:test"
    harmless: str = "builtin:harmless:test"
    n: int | None = Field(default=24, ge=1)


class PatchingSection(_Section):
    """Which components are patched, in which directions, and how."""

    method: Literal["exact", "attribution"] = "exact"
    candidates: int = Field(default=40, ge=1)
    kinds: list[Kind] = Field(default_factory=_all_kinds, min_length=1)
    directions: list[Direction] = Field(default_factory=_directions, min_length=1)
    n_pairs: int | None = Field(default=None, ge=1)
    max_batch_tokens: int = Field(default=4096, ge=64)


class RankSection(_Section):
    """How components are ranked."""

    kinds: list[Ranked] = Field(default_factory=_ranked_kinds, min_length=1)
    direction: Direction = "denoise"
    top: int = Field(default=20, ge=1)
    threshold: float = 0.1
    n_boot: int = Field(default=1000, ge=10)


class AblationSection(_Section):
    """The generation check: ablate the top k, regenerate on held-out harmful prompts."""

    ks: list[int] = Field(default_factory=lambda: [1, 5, 10, 20], min_length=1)
    method: Literal["zero", "mean", "resample", "direction"] = "mean"
    n_random: int = Field(default=20, ge=1)
    max_new_tokens: int = Field(default=24, ge=1)
    batch_size: int = Field(default=24, ge=1)
    refusal_phrases: list[str] | None = None
    components: list[str] | None = Field(default=None, min_length=1)

    @field_validator("ks")
    @classmethod
    def _positive(cls, ks: list[int]) -> list[int]:
        if any(k < 1 for k in ks):
            raise ValueError("every k must be at least 1")
        return sorted(set(ks))


class CircuitReportSection(_Section):
    """Report options."""

    n_examples: int = Field(default=6, ge=0)


class CircuitRunConfig(_Section):
    """The whole refusal-circuit study."""

    study: Literal["refusal_circuit"] = "refusal_circuit"
    model: str = "default"
    dtype: str = "auto"
    device: str = "auto"
    seed: int = 0
    chat: bool = True
    intervention: str | None = None
    pairs: str = "builtin"
    baseline: BaselineSection = BaselineSection()
    patching: PatchingSection = PatchingSection()
    rank: RankSection = RankSection()
    ablation: AblationSection = AblationSection()
    report: CircuitReportSection = CircuitReportSection()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the manifest records)."""
        return self.model_dump(mode="json")


STUDIES = ("refusal", "refusal_circuit")


def parse_circuit_config(data: Any, source: str = "<config>", base: Path | None = None) -> CircuitRunConfig:
    """Validate a parsed mapping; relative ``intervention``/``pairs`` paths resolve against ``base`` (the config's folder)."""
    try:
        cfg = CircuitRunConfig.model_validate(data or {})
    except ValidationError as exc:
        raise to_input_error(exc, source, CircuitRunConfig) from None
    if base is not None:
        update: dict[str, Any] = {}
        if cfg.intervention is not None and not Path(cfg.intervention).is_absolute():
            update["intervention"] = str(base / cfg.intervention)
        if cfg.pairs != "builtin" and not Path(cfg.pairs).is_absolute():
            update["pairs"] = str(base / cfg.pairs)
        cfg = cfg.model_copy(update=update)
    return cfg


def study_of(data: Any, source: str, override: str | None) -> str:
    """Which study a parsed config names (``study:``; absent: ``refusal``), checked against ``--study``."""
    named = data.get("study") if isinstance(data, dict) else None
    if named is not None and named not in STUDIES:
        raise InputError(f"unknown study {named!r}; choose one of {', '.join(STUDIES)}", path=source, field="study")
    if override is not None and override not in STUDIES:
        raise InputError(f"unknown study {override!r}; choose one of {', '.join(STUDIES)}", field="--study")
    if override is not None and named is not None and named != override:
        raise InputError(f"the config names study {named!r} but --study says {override!r}", path=source, field="study")
    return str(override or named or "refusal")
