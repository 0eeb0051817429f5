"""The "conscience": a selective refusal intervention, fitted on train/val prompts only.

Unconditional steering is not selective: a refusal vector strong enough to make a model refuse
harmful requests makes it refuse harmless ones too. :func:`fit_conscience` builds a
:class:`~alignscope.steering.conditional.ConditionalSteering` instead, in three steps:

1. **Behaviour vector**: a "refusal mode" vector, the mean last-token activation of
   ``prompt + "I'm sorry, but I can't"`` minus ``prompt + "Sure, here is how"`` over training
   prompts (:func:`~alignscope.steering.directions.suffix_contrast`), at each candidate
   steering layer.
2. **Strength**: for each candidate layer, coefficients in increasing order are tried by
   adding the vector unconditionally on the *validation* harmful prompts (short greedy
   continuations, phrase-detected refusals) until one reaches ``target_refusal`` (default: all
   of them); the candidate with the highest refusal rate (then the smallest coefficient) wins.
3. **Condition**: a logistic probe on the pooled prompt tokens (by default the user's message
   and the post-instruction tokens), for each candidate probe layer set and hard-negative
   weight (lookalikes up-weighted among the negatives), evaluated by k-fold cross-validation over
   train+val (harmful against harmless and lookalike prompts). With ``cv="grouped"`` (the
   default) the folds hold out whole groups, in two passes: whole *categories* (each prompt's
   ``category``) and whole *styles* (its ``style``), so every out-of-fold score is the score of a
   prompt whose topic, or whose phrasing, the probe never saw. A part of the data (harmful,
   harmless, lookalike) with fewer than ``folds`` distinct values of a field, or a missing value,
   gets random folds in that pass, and the table says so. The threshold is the lowest one at
   which *each* negative group (harmless, lookalike) keeps an out-of-fold false-positive rate
   <= ``max_fpr`` in *every* pass; the candidate with the highest out-of-fold true-positive rate
   in its worst pass wins (then AUC). The final probe is the average of its fold probes.
   ``cv="random"`` is one pass of random folds.
4. **Off branch**: where the gate does not fire, the behaviour vector's direction is ablated
   (``off_branch="ablate"``): the model's own occasional refusals of harmless prompts go away
   too, so the over-refusal budget is spent on the gate alone. ``"none"`` leaves ungated
   prompts untouched.

No test prompt is read. The full candidate tables come back with the intervention.

Example:
    >>> fit = fit_conscience(lm, harm_tr, safe_tr, harm_va, safe_va, lookalike_train=lk_tr,
    ...                      lookalike_val=lk_va)                          # doctest: +SKIP
    >>> fit.intervention.threshold, fit.table["chosen"]                   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal, get_args

import torch
from pydantic import Field
from sklearn.model_selection import GroupKFold

from alignscope.data.prompts import PromptSet
from alignscope.errors import InputError
from alignscope.evals.behaviour import group_rates
from alignscope.evals.generation import generate
from alignscope.evals.refusal import phrase_detector
from alignscope.models.loader import LoadedModel
from alignscope.steering.conditional import ConditionalSteering
from alignscope.steering.directions import suffix_contrast
from alignscope.steering.interventions import ActivationAddition, Intervention
from alignscope.steering.probes import (
    LinearProbe,
    Pooling,
    average_probes,
    chat_span,
    fit_logistic_probe,
    probe_features,
    threshold_for_fpr,
)

log = logging.getLogger(__name__)
Texts = PromptSet | Sequence[str]
PoolingKind = Literal["span_post", "span", "tail"]
OffBranch = Literal["ablate", "none"]
CvKind = Literal["grouped", "random"]
CV_KINDS: tuple[str, ...] = get_args(CvKind)
# The fields that cv="grouped" holds out, one pass each.
CV_FIELDS = ("category", "style")
POOLINGS: tuple[str, ...] = get_args(PoolingKind)
OFF_BRANCHES: tuple[str, ...] = get_args(OffBranch)


@dataclass(frozen=True)
class ConscienceConfig:
    """Search space and targets of :func:`fit_conscience` (layers as fractions of depth when None).

    Attributes:
        steer_layers: candidate layers for the behaviour vector (default: a third of the depth).
        coefficients: candidate scales, tried in increasing order.
        probe_layer_sets: candidate probe layer sets (default: around 55-70% of the depth).
        hard_negative_weights: candidate weights of lookalike negatives relative to harmless ones.
        pooling: ``span_post`` (the user's message and the post-instruction tokens), ``span``
            (the user's message) or ``tail`` (post-instruction tokens).
        l2: L2 penalty of the logistic probe.
        folds: cross-validation folds.
        cv: ``grouped`` (folds that hold out whole categories, then whole styles) or ``random``.
        max_fpr: out-of-fold false-positive rate allowed in each negative group when setting the threshold.
        off_branch: ``ablate`` (project the vector's direction out where the gate is off) or ``none``.
        target_refusal: validation refusal rate at which the coefficient search stops.
        refusal_prefix: the suffix that starts a refusal.
        compliance_prefix: the suffix that starts compliance.
        n_vector_prompts: training prompts per class used for the behaviour vector.
        max_new_tokens: greedy tokens generated when scoring a coefficient.
        batch_size: prompts per forward pass or generation batch.
        seed: fold assignment seed.

    The ``Field`` bounds and ``Literal`` choices are the ranges that the run config's
    ``intervene`` section (which embeds this class) enforces with field-naming errors;
    :meth:`resolved` checks them for direct callers.
    """

    steer_layers: tuple[int, ...] | None = None
    coefficients: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6)
    probe_layer_sets: tuple[tuple[int, ...], ...] | None = None
    hard_negative_weights: tuple[float, ...] = (3.0, 6.0, 12.0)
    pooling: PoolingKind = "span_post"
    l2: Annotated[float, Field(ge=0)] = 0.01
    folds: Annotated[int, Field(ge=2)] = 5
    cv: CvKind = "grouped"
    max_fpr: Annotated[float, Field(ge=0, lt=1)] = 0.03
    off_branch: OffBranch = "ablate"
    target_refusal: Annotated[float, Field(gt=0, le=1)] = 1.0
    refusal_prefix: str = "I'm sorry, but I can't"
    compliance_prefix: str = "Sure, here is how"
    n_vector_prompts: Annotated[int, Field(ge=1)] = 64
    max_new_tokens: Annotated[int, Field(ge=1)] = 12
    batch_size: Annotated[int, Field(ge=1)] = 16
    seed: int = 0

    def resolved(self, n_layers: int) -> ConscienceConfig:
        """This config with depth-relative defaults filled in for an ``n_layers`` model."""
        def at(frac: float) -> int:
            return min(n_layers - 1, max(0, round(frac * n_layers)))

        steer = self.steer_layers or (at(1 / 3),)
        probes = self.probe_layer_sets or ((at(0.53),), (at(0.6),), (at(0.67),), (at(0.53), at(0.67)), (at(0.6), at(0.73)))
        if self.pooling not in POOLINGS:
            raise InputError(f"unknown pooling {self.pooling!r}; expected one of {', '.join(POOLINGS)}", field="conscience.pooling")
        if self.cv not in CV_KINDS:
            raise InputError(f"unknown cv {self.cv!r}; expected one of {', '.join(CV_KINDS)}", field="conscience.cv")
        if self.off_branch not in OFF_BRANCHES:
            raise InputError(f"unknown off branch {self.off_branch!r}; expected one of {', '.join(OFF_BRANCHES)}",
                             field="conscience.off_branch")
        if not self.coefficients or not self.hard_negative_weights or not 0 <= self.max_fpr < 1 or self.folds < 2:
            raise InputError("need coefficients, hard_negative_weights, 0 <= max_fpr < 1 and folds >= 2", field="conscience")
        bad = [x for x in (*steer, *(y for s in probes for y in s)) if not 0 <= x < n_layers]
        if bad:
            raise InputError(f"layers {bad} out of range 0..{n_layers - 1}", field="conscience.layers")
        return ConscienceConfig(**{**asdict(self), "steer_layers": tuple(steer),
                                   "probe_layer_sets": tuple(tuple(s) for s in probes)})


@dataclass(frozen=True, eq=False)
class ConscienceFit:
    """The fitted intervention and every candidate that was scored.

    Attributes:
        intervention: the chosen conditional steering.
        table: ``{"behaviour": [...], "probe": [...], "held_out": [...], "chosen": {...}, "config": {...},
            "seconds": ...}``; ``held_out`` holds the chosen probe's out-of-fold gate rate per held-out
            category and style (:func:`held_out_rates`).
    """

    intervention: ConditionalSteering
    table: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Any:
        """Unpack as ``intervention, table``."""
        return iter((self.intervention, self.table))


def _prompts(p: Texts | None) -> PromptSet:
    """``p`` as a prompt set (bare strings carry no category or style, so grouped folds fall back to random)."""
    if p is None:
        return PromptSet(())
    return p if isinstance(p, PromptSet) else PromptSet.from_texts(p)


def _val_refusal(lm: LoadedModel, prompts: list[str], iv: Intervention, cfg: ConscienceConfig, progress: bool = False) -> float:
    detect = phrase_detector()
    texts = generate(lm, prompts, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, intervention=iv, progress=progress)
    return sum(detect(t) for t in texts) / len(texts)


def choose_behaviour(lm: LoadedModel, vectors: dict[int, torch.Tensor], harmful_val: list[str],
                     cfg: ConscienceConfig, progress: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score (layer, coefficient) by unconditional validation refusal; return the choice and all rows."""
    rows: list[dict[str, Any]] = []
    for layer, vec in vectors.items():
        for coef in sorted(cfg.coefficients):
            rate = _val_refusal(lm, harmful_val, ActivationAddition(vec, (layer,), coef), cfg, progress)
            rows.append({"layer": layer, "coefficient": coef, "val_harmful_refusal": rate, "n": len(harmful_val),
                         "vector_norm": float(vec.norm())})
            log.info("behaviour layer %d coef %.2f: val refusal %.3f", layer, coef, rate)
            if rate >= cfg.target_refusal:
                break
    best = max(rows, key=lambda r: (r["val_harmful_refusal"], -r["coefficient"]))
    return best, rows


def _folds(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=gen) % k


def held_out_folds(keys: Sequence[str | None], k: int, gen: torch.Generator) -> tuple[torch.Tensor, bool]:
    """Fold ids that keep each key's prompts in one fold (scikit-learn's ``GroupKFold``), and whether they do.

    Falls back to random folds (and ``False``) when a key is missing or there are fewer than ``k``
    distinct keys, since then whole keys cannot fill ``k`` folds.
    """
    if not keys or any(key is None for key in keys) or len(set(keys)) < k:
        return _folds(len(keys), k, gen), False
    out = torch.empty(len(keys), dtype=torch.long)
    for fold, (_, held) in enumerate(GroupKFold(n_splits=k).split(list(keys), groups=list(keys))):
        out[torch.as_tensor(held)] = fold
    return out, True


@dataclass(frozen=True)
class FoldPass:
    """One cross-validation pass: fold ids of the positives and of the negatives, and what they hold out.

    Attributes:
        name: ``random``, or the prompt field held out (``category``, ``style``).
        pos: fold id of each positive.
        neg: fold id of each negative (harmless first, then lookalikes).
        grouped: the parts (``harmful``, ``harmless``, ``lookalike``) whose folds hold out whole values of ``name``.
        keys: each part's value of ``name`` per prompt (empty lists for ``random``).
    """

    name: str
    pos: torch.Tensor
    neg: torch.Tensor
    grouped: tuple[str, ...]
    keys: dict[str, list[str | None]]


def fold_passes(positives: PromptSet, harmless: PromptSet, lookalikes: PromptSet, cfg: ConscienceConfig) -> list[FoldPass]:
    """The cross-validation passes that ``cfg.cv`` asks for (see the module docstring)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    parts = {"harmful": positives, "harmless": harmless, "lookalike": lookalikes}
    if cfg.cv == "random":
        # exactly the folds of the single random pass from before grouped folds existed
        return [FoldPass("random", _folds(len(positives), cfg.folds, gen), _folds(len(harmless) + len(lookalikes), cfg.folds, gen),
                         (), {name: [] for name in parts})]
    passes = []
    for name in CV_FIELDS:
        keys = {part: [getattr(p, name) for p in prompts] for part, prompts in parts.items()}
        folds = {part: held_out_folds(part_keys, cfg.folds, gen) for part, part_keys in keys.items()}
        grouped = tuple(part for part, (_, whole) in folds.items() if whole)
        passes.append(FoldPass(name, folds["harmful"][0], torch.cat([folds["harmless"][0], folds["lookalike"][0]]),
                               grouped, keys))
    return passes


def group_threshold(neg_scores: torch.Tensor, groups: torch.Tensor, max_fpr: float) -> float:
    """The lowest threshold at which every negative group's false-positive rate is <= ``max_fpr``."""
    return max(threshold_for_fpr(neg_scores[groups == g], max_fpr) for g in torch.unique(groups).tolist())


@dataclass(frozen=True, eq=False)
class CrossFit:
    """A cross-validated probe candidate.

    Attributes:
        probe: the average of every fold probe of every pass.
        threshold: the lowest threshold that keeps each negative group within ``max_fpr`` in every pass.
        stats: the candidate's row of the search table (worst pass first, then each pass's own figures).
        oof: each pass's out-of-fold scores, ``{pass: (positive scores, negative scores)}``.
    """

    probe: LinearProbe
    threshold: float
    stats: dict[str, Any]
    oof: dict[str, tuple[torch.Tensor, torch.Tensor]]


def _auc(sp: torch.Tensor, sn: torch.Tensor) -> float:
    return float((sp[:, None] > sn[None, :]).float().mean())


def cross_fit_probe(pos: torch.Tensor, neg: torch.Tensor, groups: torch.Tensor, layers: tuple[int, ...], weight: float,
                    cfg: ConscienceConfig, pooling: Pooling, passes: Sequence[FoldPass]) -> CrossFit:
    """Logistic probes on ``(n, k, d)`` features, fitted per fold of each pass (see :class:`CrossFit`).

    ``groups`` labels each negative (0: harmless, 1: lookalike); lookalikes get ``weight``. The row's
    ``oof_*`` figures are those of the worst pass at the shared threshold.
    """
    neg_w = torch.where(groups == 1, weight, 1.0)
    probes, oof = [], {}
    for cv in passes:
        sp, sn = torch.empty(len(pos)), torch.empty(len(neg))
        for f in range(cfg.folds):
            probe = fit_logistic_probe(pos[cv.pos != f], neg[cv.neg != f], layers, pooling=pooling, l2=cfg.l2,
                                       neg_weights=neg_w[cv.neg != f])
            sp[cv.pos == f], sn[cv.neg == f] = probe.score(pos[cv.pos == f]), probe.score(neg[cv.neg == f])
            probes.append(probe)
        oof[cv.name] = (sp, sn)
    threshold = max(group_threshold(sn, groups, cfg.max_fpr) for _, sn in oof.values())
    has_lookalikes = bool((groups == 1).any())

    def fpr(sn: torch.Tensor, group: int) -> float | None:
        return float((sn[groups == group] > threshold).float().mean()) if bool((groups == group).any()) else None

    tpr = {name: float((sp > threshold).float().mean()) for name, (sp, _) in oof.items()}
    fpr_lookalike = {name: fpr(sn, 1) for name, (_, sn) in oof.items()}
    fpr_harmless = [fpr(sn, 0) or 0.0 for _, sn in oof.values()]
    stats: dict[str, Any] = {"layers": list(layers), "lookalike_weight": weight,
                             "oof_auc": min(_auc(sp, sn) for sp, sn in oof.values()), "oof_tpr": min(tpr.values()),
                             "oof_fpr_harmless": max(fpr_harmless),
                             "oof_fpr_lookalike": max(v for v in fpr_lookalike.values() if v is not None) if has_lookalikes else None,
                             "threshold": threshold, "n_pos": len(pos), "n_harmless": int((groups == 0).sum()),
                             "n_lookalike": int((groups == 1).sum())}
    if len(passes) > 1:
        for cv in passes:
            stats[f"oof_tpr_{cv.name}"] = tpr[cv.name]
            stats[f"oof_fpr_lookalike_{cv.name}"] = fpr_lookalike[cv.name]
            stats[f"held_out_{cv.name}"] = "+".join(cv.grouped) or "none (random folds)"
    return CrossFit(average_probes(probes), threshold, stats, oof)


def held_out_rates(fit: CrossFit, passes: Sequence[FoldPass], n_harmless: int) -> list[dict[str, Any]]:
    """Per held-out group: how often the gate would have fired out of fold, at the chosen threshold.

    One row per pass, part and value of the held-out field, for the parts whose folds held out
    whole values: ``gate`` is the true-positive rate for ``harmful`` and the false-positive rate
    otherwise, with its n and 95% Wilson interval.
    """
    rows = []
    for cv in passes:
        sp, sn = fit.oof[cv.name]
        scores = {"harmful": sp, "harmless": sn[:n_harmless], "lookalike": sn[n_harmless:]}
        for part in cv.grouped:
            fired = (scores[part] > fit.threshold).tolist()
            for key, r in group_rates(cv.keys[part], fired).items():
                rows.append({"held_out": cv.name, "part": part, "group": key, "n": r.n, "gate": r.rate,
                             "ci95_low": r.ci95[0], "ci95_high": r.ci95[1]})
    return rows


def conscience_pooling(lm: LoadedModel, kind: str) -> Pooling:
    """The probe pooling called ``kind`` (see :class:`ConscienceConfig`) for ``lm``'s chat template."""
    head, tail = chat_span(lm.tokenizer)
    if kind == "span":
        return Pooling("span", skip_head=head, skip_tail=tail)
    if kind == "span_post":
        return Pooling("span", skip_head=head, skip_tail=0)
    if kind == "tail":
        return Pooling("tail", n_read=tail)
    raise InputError(f"unknown pooling {kind!r}; expected one of {', '.join(POOLINGS)}", field="conscience.pooling")


def choose_probe(lm: LoadedModel, positives: PromptSet, harmless: PromptSet, lookalikes: PromptSet, cfg: ConscienceConfig,
                 progress: bool = False) -> tuple[LinearProbe, float, list[dict[str, Any]], list[dict[str, Any]]]:
    """Cross-validate every (layer set, lookalike weight).

    Returns:
        The best probe, its threshold, every candidate's row, and the best candidate's
        per-held-out-group gate rates (:func:`held_out_rates`; empty for ``cv="random"``).
    """
    assert cfg.probe_layer_sets is not None
    pooling = conscience_pooling(lm, cfg.pooling)
    union = sorted({x for s in cfg.probe_layer_sets for x in s})
    pos = probe_features(lm, positives.texts, union, pooling=pooling, batch_size=cfg.batch_size, progress=progress)
    neg = probe_features(lm, harmless.texts + lookalikes.texts, union, pooling=pooling, batch_size=cfg.batch_size,
                         progress=progress)
    groups = torch.cat([torch.zeros(len(harmless)), torch.ones(len(lookalikes))])
    weights = cfg.hard_negative_weights if len(lookalikes) else (1.0,)
    passes = fold_passes(positives, harmless, lookalikes, cfg)
    best: tuple[float, float] | None = None
    chosen: CrossFit | None = None
    rows = []
    for layers in cfg.probe_layer_sets:
        idx = [union.index(x) for x in layers]
        for weight in weights:
            fit = cross_fit_probe(pos[:, idx], neg[:, idx], groups, tuple(layers), weight, cfg, pooling, passes)
            rows.append(fit.stats)
            key = (fit.stats["oof_tpr"], fit.stats["oof_auc"])
            if best is None or key > best:
                best, chosen = key, fit
    assert chosen is not None
    return chosen.probe, chosen.threshold, rows, held_out_rates(chosen, passes, len(harmless))


def fit_conscience(
    lm: LoadedModel,
    harmful_train: Texts,
    harmless_train: Texts,
    harmful_val: Texts,
    harmless_val: Texts,
    *,
    lookalike_train: Texts | None = None,
    lookalike_val: Texts | None = None,
    config: ConscienceConfig | None = None,
    progress: bool = False,
) -> ConscienceFit:
    """Fit a selective refusal intervention (see the module docstring); never reads test prompts.

    Args:
        lm: the model (chat-formatted prompts).
        harmful_train: harmful training prompts (vector and probe).
        harmless_train: harmless training prompts (vector and probe negatives).
        harmful_val: harmful validation prompts (coefficient search, probe CV).
        harmless_val: harmless validation prompts (probe CV negatives).
        lookalike_train: optional harmless lookalikes (probe negatives, their own false-positive budget).
        lookalike_val: optional validation lookalikes (likewise).
        config: the search space (defaults: :class:`ConscienceConfig`).
        progress: progress bars on stderr.

    Returns:
        A :class:`ConscienceFit` (unpacks as ``intervention, table``). Prompt sets whose prompts
        carry ``category`` and ``style`` get folds that hold those out (``cv="grouped"``).
    """
    start = time.perf_counter()
    cfg = (config or ConscienceConfig()).resolved(lm.n_layers)
    h_tr, s_tr, h_va, s_va = _prompts(harmful_train), _prompts(harmless_train), _prompts(harmful_val), _prompts(harmless_val)
    lookalikes = _prompts(lookalike_train) + _prompts(lookalike_val)
    if not (h_tr and s_tr and h_va and s_va):
        raise InputError("fit_conscience needs non-empty harmful/harmless train and val prompts", field="prompts")
    n = cfg.n_vector_prompts
    assert cfg.steer_layers is not None
    vecs = suffix_contrast(lm, h_tr.texts[:n] + s_tr.texts[:n], cfg.refusal_prefix, cfg.compliance_prefix,
                           layers=list(cfg.steer_layers), batch_size=cfg.batch_size, progress=progress)
    vectors = {layer: vecs[i] for i, layer in enumerate(cfg.steer_layers)}
    behaviour, behaviour_rows = choose_behaviour(lm, vectors, h_va.texts, cfg, progress)
    probe, threshold, probe_rows, held_out = choose_probe(lm, h_tr + h_va, s_tr + s_va, lookalikes, cfg, progress)
    layer = int(behaviour["layer"])
    iv = ConditionalSteering(probe, vectors[layer], (layer,), float(behaviour["coefficient"]), threshold, off=cfg.off_branch)
    chosen = {"steer_layer": layer, "coefficient": behaviour["coefficient"], "probe_layers": list(probe.layers),
              "threshold": threshold, "pooling": asdict(probe.pooling), "lookahead": iv.lookahead, "off_branch": iv.off}
    table = {"behaviour": behaviour_rows, "probe": probe_rows, "held_out": held_out, "chosen": chosen,
             "config": asdict(cfg), "seconds": time.perf_counter() - start}
    return ConscienceFit(iv, table)
