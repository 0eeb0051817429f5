"""The ``alignscope mac train`` config: YAML sections validated by pydantic, unknown keys rejected by name.

Every section is optional; no config at all trains on the embedded model and the built-in mixes::

    model: default                  # default, a hub id or a local directory
    device: auto
    dtype: float32
    data:
      mixes: [refusals, helpful, honest]   # built-in mixes (data.training)
      sources: []                   # more training sources: alpaca:PATH, beavertails:PATH, truthfulqa:PATH, hh:PATH, hf:NAME
      distill_tokens: 40            # greedy tokens of the model's own answers for self-distilled examples
      max_examples_per_mix: null    # cap per mix (seeded choice), null: all
    train:                          # the circuit and the schedule (recipes.mac_train.TrainSettings)
      layer: null                   # null: n_layers // 2
      axes: [helpful, harmless, honest]
      width: 16
      gate: sigmoid
      lr: 0.03
      epochs: 2
      batch_size: 8
      grad_accum: 1
      warmup_steps: 10
      seed: 0
      max_length: 96
      checkpoint_every: 25
      keep_loss: kl                 # self-distilled examples: kl (KL from the unsteered model) or ce (their greedy answer)
      kl_weight: 1.0                # that KL term's weight against the other examples' cross-entropy
      gate_weight: 0.0              # > 0: supervise the gate_axis gate directly (BCE against "should refuse")
      gate_axis: harmless
      gate_init: probe              # the gate_axis gate starts as a logistic probe of the whole prompt (recipes.mac_init);
                                    # random: a fresh circuit's decision, as before (chosen on the val splits, see README)
      gate_scale: 10.0              # probe start: the gate starts as sigmoid(gate_scale * (the probe's logit - gate_margin))
      gate_margin: 0.5              # probe start: the probe logit at which the gate is half open (above 0: surer prompts only;
                                    # chosen on the val splits, see README)
      freeze: [axes, axis_bias, query, key, decide, decide_bias]   # circuit parameters kept at their starting values:
                                    # with these, the gate stays the probe and only the nudges train
                                    # (with gate_init: random, gate_scale, gate_margin and freeze default to 1.0, 0 and [])
      scope: response               # which tokens are nudged: response (the last prompt token and the answer; chosen
                                    # on the val splits, see README) or all
      hold: true                    # the gates decided at the last prompt token act on the whole answer (scope response
                                    # only, and false by default with scope all; the answer's tokens cannot reopen them;
                                    # chosen on the val splits, see README)
    lora:                           # null: no LoRA variants
      r: 8
      alpha: 16
      dropout: 0.0
      target_modules: [q_proj, v_proj]
      lr: 0.0005
    qlora: false                    # 4-bit base for the LoRA variants (CUDA only)
    variants: [module, lora, module_lora]
    compare:
      addition: true                # an unconditional addition of the harmless axis' mean difference
      conscience: none              # none, fit (fit the refusal study's conscience here) or a path to its intervention file
      max_new_tokens: 48
      batch_size: 16
      sensor_prompts: 4             # prompts per label drawn in the sensor heatmap
      limit: null                   # first N prompts per test set and honest item (quick checks only; null: all)
      judge: null                   # {base_url, model, api_key_env, ...}: an OpenAI-compatible judge rates every
                                    # row's generations 1-10 on helpful, harmless and honest (key from the environment)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alignscope.errors import InputError
from alignscope.pipeline.config import JudgeSection, read_yaml, to_input_error
from alignscope.recipes.mac_train import GATE_PARAMETERS, LoraSettings, TrainSettings
from alignscope.steering.circuit import ParameterName, Scope, check_hold

Variant = Literal["module", "lora", "module_lora"]
VARIANTS: tuple[Variant, ...] = ("module", "lora", "module_lora")


# The probe start's defaults, chosen on the val splits (README): a sharp gate that stays the probe.
PROBE_SCALE = 10.0
PROBE_MARGIN = 0.5
PROBE_FREEZE: tuple[ParameterName, ...] = ("axes", "axis_bias", "query", "key", "decide", "decide_bias")
# With gate_init: random they default to these instead; the two probe-only settings may not take other values there.
RANDOM_START: dict[str, Any] = {"gate_scale": 1.0, "gate_margin": 0.0, "freeze": ()}
PROBE_ONLY = {"gate_scale": "sharpens the probe start", "gate_margin": "moves the probe start's threshold"}
# With a scope other than response, hold defaults to this instead (there is no prompt's end to hold the gates from).
OTHER_SCOPE: dict[str, Any] = {"hold": False}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MacData(_Section):
    mixes: tuple[str, ...] = ("refusals", "helpful", "honest")
    sources: tuple[str, ...] = ()
    distill_tokens: Annotated[int, Field(ge=1)] = 40
    max_examples_per_mix: Annotated[int | None, Field(ge=1)] = None


class MacTrain(_Section):
    layer: Annotated[int | None, Field(ge=0)] = None
    axes: tuple[str, ...] = ("helpful", "harmless", "honest")
    width: Annotated[int, Field(ge=1)] = 16
    gate: Literal["sigmoid", "tanh"] = "sigmoid"
    lr: Annotated[float, Field(gt=0)] = 3e-2
    epochs: Annotated[int, Field(ge=1)] = 2
    batch_size: Annotated[int, Field(ge=1)] = 8
    grad_accum: Annotated[int, Field(ge=1)] = 1
    warmup_steps: Annotated[int, Field(ge=0)] = 10
    seed: int = 0
    max_length: Annotated[int, Field(ge=8)] = 96
    checkpoint_every: Annotated[int, Field(ge=1)] = 25
    keep_loss: Literal["kl", "ce"] = "kl"
    kl_weight: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1.0
    gate_weight: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    gate_axis: str = "harmless"
    gate_init: Literal["random", "probe"] = "probe"
    gate_scale: Annotated[float, Field(gt=0, allow_inf_nan=False)] = PROBE_SCALE
    gate_margin: Annotated[float, Field(allow_inf_nan=False)] = PROBE_MARGIN
    freeze: tuple[ParameterName, ...] = PROBE_FREEZE
    scope: Scope = "response"
    hold: bool = True


class MacLora(_Section):
    r: Annotated[int, Field(ge=1)] = 8
    alpha: Annotated[int, Field(ge=1)] = 16
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    lr: Annotated[float, Field(gt=0)] = 5e-4


class MacCompare(_Section):
    addition: bool = True
    conscience: str = "none"
    max_new_tokens: Annotated[int, Field(ge=1)] = 48
    batch_size: Annotated[int, Field(ge=1)] = 16
    sensor_prompts: Annotated[int, Field(ge=1)] = 4
    limit: Annotated[int | None, Field(ge=1)] = None
    judge: JudgeSection | None = None


class MacConfig(_Section):
    """The whole ``mac train`` config (see the module docstring for every field)."""

    model: str = "default"
    device: str = "auto"
    dtype: str | None = "float32"
    data: MacData = MacData()
    train: MacTrain = MacTrain()
    lora: MacLora | None = MacLora()
    qlora: bool = False
    variants: tuple[Variant, ...] = VARIANTS
    compare: MacCompare = MacCompare()

    def settings(self, variant: str) -> TrainSettings:
        """The trainer's settings for one variant (``module``, ``lora`` or ``module_lora``)."""
        t = self.train
        lora = None
        if variant != "module":
            if self.lora is None:
                raise InputError(f"variant {variant!r} needs a lora: section", field="variants")
            lora = LoraSettings(self.lora.r, self.lora.alpha, self.lora.dropout, tuple(self.lora.target_modules), self.lora.lr)
        return TrainSettings(module=variant != "lora", layer=t.layer, axes=tuple(t.axes), width=t.width, gate=t.gate, lora=lora,
                             qlora=self.qlora and lora is not None, lr=t.lr, epochs=t.epochs, batch_size=t.batch_size,
                             grad_accum=t.grad_accum, warmup_steps=t.warmup_steps, seed=t.seed, max_length=t.max_length,
                             checkpoint_every=t.checkpoint_every, keep_loss=t.keep_loss, kl_weight=t.kl_weight,
                             gate_weight=t.gate_weight, gate_axis=t.gate_axis, scope=t.scope,
                             hold=t.hold and variant != "lora",
                             freeze=tuple(t.freeze) if variant != "lora" else ())  # LoRA alone has no circuit to freeze

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``training.json`` records)."""
        return self.model_dump(mode="json")


def parse_mac_config(data: Any, source: str = "<config>") -> MacConfig:
    """Validate a parsed YAML mapping (None means all defaults); errors name the file and dotted field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping of sections at the top level, got {type(data).__name__}", path=source)
    try:
        cfg = MacConfig.model_validate(data)
    except ValidationError as exc:
        raise to_input_error(exc, source, MacConfig) from None
    if not cfg.train.axes:
        raise InputError("expected at least one axis (got an axis count of 0)", path=source, field="train.axes")
    if not cfg.variants:
        raise InputError("expected at least one variant", path=source, field="variants")
    chosen = cfg.train.model_fields_set
    fallback: dict[str, Any] = {}  # defaults that depend on another setting, applied where not chosen
    if cfg.train.gate_init != "probe":
        for name, what in PROBE_ONLY.items():
            if name in chosen and getattr(cfg.train, name) != RANDOM_START[name]:
                raise InputError(f"{name} {what} and needs gate_init: probe", path=source, field=f"train.{name}")
        fallback |= RANDOM_START  # the probe start's defaults do not apply
    if cfg.train.scope != "response":
        fallback |= OTHER_SCOPE  # holding needs the prompt's end
    unchosen = {k: v for k, v in fallback.items() if k not in chosen}
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update=unchosen)})
    check_hold(cfg.train.hold, cfg.train.scope, source, "train.hold")
    if cfg.train.gate_weight > 0 and set(GATE_PARAMETERS) <= set(cfg.train.freeze):
        raise InputError("gate_weight trains the gate, but train.freeze keeps every parameter the gate depends on at its "
                         "start (the default with gate_init: probe); set freeze to the parameters to keep", path=source,
                         field="train.gate_weight")
    if cfg.train.gate_init == "probe":
        if cfg.train.gate_axis not in cfg.train.axes:
            raise InputError(f"no axis named {cfg.train.gate_axis!r}; the axes are {', '.join(cfg.train.axes)}", path=source,
                             field="train.gate_axis")
        if cfg.train.gate != "sigmoid":
            raise InputError(f"a probe-initialised gate is a probability and needs gate: sigmoid, got {cfg.train.gate!r}",
                             path=source, field="train.gate")
    return cfg


def load_mac_config(path: str | Path | None) -> MacConfig:
    """Read and validate a YAML ``mac train`` config; ``None`` gives the built-in defaults."""
    return MacConfig() if path is None else parse_mac_config(read_yaml(Path(path)), str(path))
