"""Choose one refusal direction among difference-in-means candidates (the refusal-direction method, any architecture).

Every (position, layer) of a :class:`~alignscope.steering.directions.MeanDiff` is a candidate.
Each one is scored on validation prompts with the logit refusal score
(:func:`~alignscope.metrics.refusal_logodds_metric`, the log-odds that the next token starts a
refusal):

* ``bypass``: mean refusal score on harmful prompts with the direction ablated at every layer
  (lower = ablation removes more refusal);
* ``induce``: mean refusal score on harmless prompts with the direction added at its own layer
  (higher = adding induces more refusal);
* ``kl``: mean first-token ``KL(base || ablated)`` on harmless prompts (how much ablation
  disturbs ordinary behaviour).

Candidates in the last ``1 - max_layer_frac`` of the layers are dropped (not scored), then those
whose ``kl`` exceeds ``kl_threshold`` or whose ``induce`` is not above ``induce_reference +
induce_min``. The reference (``induce_relative_to``) is, by default, the unsteered *harmful*
refusal score: a candidate must make harmless prompts look at least as refusal-prone as
harmful ones do without intervention. That rule fits any model, including one that rarely
refuses (whose refusal log-odds stay negative everywhere); ``"absolute"`` (reference 0) is
the original paper's rule and ``"harmless"`` compares with the unsteered harmless score. The
survivor with the lowest ``bypass`` is chosen. The full table is kept, with the reference in
``Selection.baseline["induce_reference"]``.

Example:
    >>> md = diff_in_means(lm, harmful_train, harmless_train)                 # doctest: +SKIP
    >>> sel = select_direction(lm, md, harmful_val, harmless_val)            # doctest: +SKIP
    >>> sel.chosen, sel.heatmap("bypass").shape                              # doctest: +SKIP
    ({'position': -1, 'layer': 12, ...}, (5, 30))
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal, get_args

import torch
from jaxtyping import Float
from pydantic import Field
from tqdm.auto import tqdm

from alignscope.data.prompts import PromptSet
from alignscope.errors import InputError
from alignscope.hooks.backends import HookTarget, select_target
from alignscope.hooks.forward import next_token_logits
from alignscope.metrics import kl_divergence, refusal_logodds_metric, refusal_token_ids
from alignscope.models.batches import encode_prompts, pad_id, padded_batches
from alignscope.models.loader import LoadedModel
from alignscope.steering.directions import MeanDiff
from alignscope.steering.interventions import ActivationAddition, DirectionalAblation, Intervention, intervention_scope

log = logging.getLogger(__name__)
InduceReference = Literal["harmful", "harmless", "absolute"]
INDUCE_REFERENCES: tuple[str, ...] = get_args(InduceReference)


@dataclass(frozen=True)
class SelectionConfig:
    """Filters of :func:`select_direction`.

    The ``Field`` bounds and ``Literal`` choices are the ranges that the run config's ``select``
    section (which embeds this class) enforces with field-naming errors.

    Attributes:
        kl_threshold: drop candidates whose ablation moves harmless next-token distributions by more (nats).
        max_layer_frac: only layers below ``max_layer_frac * n_layers`` are candidates (0.8 drops the last 20%).
        induce_min: margin: drop candidates whose addition leaves the harmless refusal score at or
            below ``reference + induce_min``.
        induce_relative_to: the reference: ``harmful`` (unsteered harmful score, default),
            ``harmless`` (unsteered harmless score) or ``absolute`` (0, the paper's rule).
        chat: chat-format the prompts.
        batch_size: prompts per forward pass.
    """

    kl_threshold: Annotated[float, Field(gt=0)] = 0.1
    max_layer_frac: float = 0.8
    induce_min: float = 0.0
    induce_relative_to: InduceReference = "harmful"
    chat: bool = True
    batch_size: Annotated[int, Field(ge=1)] = 16

    def __post_init__(self) -> None:
        if self.induce_relative_to not in INDUCE_REFERENCES:
            raise InputError(f"unknown induce reference {self.induce_relative_to!r}; expected one of "
                             f"{', '.join(INDUCE_REFERENCES)}", field="induce_relative_to")


@dataclass(frozen=True, eq=False)
class Selection:
    """The candidate table and the chosen direction.

    Attributes:
        rows: one dict per (position, layer): ``position``, ``layer``, ``norm``, ``bypass``,
            ``induce``, ``kl`` (NaN when not scored) and ``filtered`` (None, ``late_layer``,
            ``kl`` or ``no_induce``).
        chosen: the chosen row.
        direction: ``(d_model,)`` the chosen (unnormalised) difference-in-means vector.
        baseline: refusal scores without intervention, ``{"harmful": x, "harmless": y}``, plus
            ``induce_reference``, the score an ``induce`` value must exceed (before ``induce_min``).
        positions: candidate positions (offsets from the end).
        layers: candidate layers.
        seconds: wall time.
    """

    rows: list[dict[str, Any]]
    chosen: dict[str, Any]
    direction: Float[torch.Tensor, " d_model"]
    baseline: dict[str, float]
    positions: tuple[int, ...]
    layers: tuple[int, ...]
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)

    def heatmap(self, key: str) -> Float[torch.Tensor, "n_positions n_layers"]:
        """``(n_positions, n_layers)`` of one score (NaN where not scored), for plots."""
        grid = torch.full((len(self.positions), len(self.layers)), float("nan"))
        for r in self.rows:
            grid[self.positions.index(r["position"]), self.layers.index(r["layer"])] = r[key]
        return grid

    def to_json(self) -> dict[str, Any]:
        """JSON-ready table (NaN kept as float; the CLI's ``jsonable`` maps it to null)."""
        return {"rows": self.rows, "chosen": self.chosen, "baseline": self.baseline, "positions": list(self.positions),
                "layers": list(self.layers), "seconds": self.seconds, "config": self.config,
                "direction_norm": float(self.direction.norm())}


class _Scorer:
    """Last-position logits of fixed prompt batches on one hook target, with or without an intervention."""

    def __init__(self, lm: LoadedModel, prompts: Sequence[str], cfg: SelectionConfig, target: HookTarget) -> None:
        self.lm, self.target = lm, target
        self.batches = padded_batches(encode_prompts(lm.tokenizer, prompts, chat=cfg.chat), cfg.batch_size, pad_id(lm.tokenizer))
        self.metric = refusal_logodds_metric(refusal_token_ids(lm.tokenizer))

    def logits(self, intervention: Intervention | None = None) -> torch.Tensor:
        with intervention_scope(self.lm, intervention, self.target):
            return next_token_logits(self.lm, self.target, self.batches)

    def refusal(self, logits: torch.Tensor) -> float:
        return float(self.metric(logits[:, None, :]).mean())


def scoring_target(lm: LoadedModel, component: str) -> HookTarget:
    """The one back-end every scoring pass of a selection runs on: the native twin when it can hook
    both candidate edits (ablation at every layer, addition at ``component``), else the bridge."""
    probe = torch.ones(lm.d_model)
    sites = DirectionalAblation(probe).sites(lm) + ActivationAddition(probe, tuple(range(lm.n_layers)), 1.0, component).sites(lm)
    return select_target(lm, sites, "auto")


def _texts(p: PromptSet | Sequence[str]) -> list[str]:
    return p.texts if isinstance(p, PromptSet) else list(p)


def select_direction(
    lm: LoadedModel,
    candidates: MeanDiff,
    harmful_val: PromptSet | Sequence[str],
    harmless_val: PromptSet | Sequence[str],
    *,
    config: SelectionConfig | None = None,
    progress: bool = False,
) -> Selection:
    """Score every candidate direction and choose one (see the module docstring).

    Args:
        lm: the model.
        candidates: difference-in-means directions (``resid_pre``, as the interventions use).
        harmful_val: harmful validation prompts (bypass score).
        harmless_val: harmless validation prompts (induce score and KL).
        config: filters (default :class:`SelectionConfig`).
        progress: a progress bar over candidates on stderr.
    """
    cfg = config or SelectionConfig()
    start = time.perf_counter()
    if not _texts(harmful_val) or not _texts(harmless_val):
        raise InputError("selection needs harmful and harmless validation prompts", field="prompts")
    target = scoring_target(lm, candidates.component)
    harmful, harmless = _Scorer(lm, _texts(harmful_val), cfg, target), _Scorer(lm, _texts(harmless_val), cfg, target)
    base_harmless = harmless.logits()
    baseline = {"harmful": harmful.refusal(harmful.logits()), "harmless": harmless.refusal(base_harmless)}
    baseline["induce_reference"] = 0.0 if cfg.induce_relative_to == "absolute" else baseline[cfg.induce_relative_to]
    induce_floor = baseline["induce_reference"] + cfg.induce_min
    cut = cfg.max_layer_frac * lm.n_layers
    cells = [(p, layer) for p in candidates.positions for layer in candidates.layers]
    rows = []
    for pos, layer in tqdm(cells, desc="select", disable=not progress, leave=False):
        vec = candidates.direction(layer, pos)
        row: dict[str, Any] = {"position": pos, "layer": layer, "norm": float(vec.norm()), "bypass": math.nan,
                               "induce": math.nan, "kl": math.nan, "filtered": None}
        rows.append(row)
        if layer >= cut:
            row["filtered"] = "late_layer"
            continue
        if float(vec.norm()) == 0.0:
            row["filtered"] = "zero"
            continue
        ablate = DirectionalAblation(vec)
        row["kl"] = float(kl_divergence(base_harmless, harmless.logits(ablate)).double().mean())
        row["bypass"] = harmful.refusal(harmful.logits(ablate))
        row["induce"] = harmless.refusal(harmless.logits(ActivationAddition(vec, (layer,), 1.0, candidates.component)))
        if row["kl"] > cfg.kl_threshold:
            row["filtered"] = "kl"
        elif row["induce"] <= induce_floor:
            row["filtered"] = "no_induce"
    scored = [r for r in rows if r["filtered"] is None]
    if not scored:
        log.warning("every candidate was filtered out; choosing the lowest bypass score among the scored ones")
        scored = [r for r in rows if not math.isnan(r["bypass"])]
    if not scored:
        raise InputError(f"no candidate layer below {cut:.0f} (max_layer_frac={cfg.max_layer_frac})", field="layers")
    chosen = min(scored, key=lambda r: r["bypass"])
    return Selection(rows, dict(chosen), candidates.direction(chosen["layer"], chosen["position"]).clone(), baseline,
                     candidates.positions, candidates.layers, time.perf_counter() - start, asdict(cfg))
