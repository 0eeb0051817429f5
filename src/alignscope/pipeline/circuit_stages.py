"""The stages of the refusal-circuit study. Each returns JSON-ready output plus optional tensors.

baseline -> pairs -> patching -> rank -> ablation (then the report). Ranking reads only the
``rank`` split of the pairs; the ablation check regenerates on the ``heldout`` split's harmful
prompts (which ranking never saw) and measures KL on its harmless ones. An ``intervention`` file
in the config is active in every stage (patching records, generation, KL), underneath any ablation.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alignscope.circuits.ablation import Component
from alignscope.circuits.ablation_values import ablation_directions, ablation_values
from alignscope.circuits.edges import edge_attribution
from alignscope.circuits.ranking import first_place_rate, layer_importance, rank_components
from alignscope.circuits.suffix_patching import parse_component, patch_candidates, patch_shared_suffix, study_components
from alignscope.data.prompts import PromptSet
from alignscope.data.refusal_pairs import RefusalPair, load_refusal_pairs, split_pairs
from alignscope.data.sources import load_source, parse_source
from alignscope.errors import InputError
from alignscope.evals.generation import generate_detailed
from alignscope.evals.refusal import Detector, phrase_detector
from alignscope.metrics import kl_divergence, refusal_logodds_metric, refusal_token_ids
from alignscope.models.chat import encode_one
from alignscope.models.loader import LoadedModel, load_model
from alignscope.models.registry import get_arch
from alignscope.pipeline.circuit_config import CircuitRunConfig
from alignscope.pipeline.context import StageOutput
from alignscope.pipeline.data import round_robin
from alignscope.pipeline.store import StageRecord
from alignscope.stats import percentile_ci, permutation_p, rate
from alignscope.steering.component_ablation import ComponentAblation
from alignscope.steering.intervention_io import load_intervention
from alignscope.steering.interventions import HookIntervention, intervention_scope

MAX_EDGE_PAIRS = 6
EDGE_IG_STEPS = 3
SHARED_NOTE = ("pairs of different token lengths are compared at the post-instruction positions every chat-formatted prompt "
               "shares (the end of the user turn and the start of the assistant turn); patching writes only those positions")


@dataclass
class CircuitContext:
    """What every stage reads: the config, output directory, and the model and intervention (loaded on first use)."""

    cfg: CircuitRunConfig
    out: Path
    progress: bool = True
    _lm: LoadedModel | None = field(default=None, repr=False)
    _iv: HookIntervention[Any] | None = field(default=None, repr=False)
    _pairs: list[RefusalPair] | None = field(default=None, repr=False)

    @property
    def lm(self) -> LoadedModel:
        """The model, loaded once."""
        if self._lm is None:
            self._lm = load_model(self.cfg.model, dtype=self.cfg.dtype, device=self.cfg.device)
            if self._iv is not None:
                self._iv.validate(self._lm)
        return self._lm

    @property
    def intervention(self) -> HookIntervention[Any] | None:
        """The configured intervention (read when the context is built, so a bad file fails before any stage)."""
        return self._iv

    @property
    def pairs(self) -> list[RefusalPair]:
        """Every pair of the configured pair file."""
        if self._pairs is None:
            self._pairs = load_refusal_pairs(self.cfg.pairs)
        return self._pairs

    def detector(self) -> Detector:
        """The refusal detector."""
        return phrase_detector(self.cfg.ablation.refusal_phrases)

    def seed_everything(self) -> None:
        """Seed python and torch before each stage."""
        random.seed(self.cfg.seed)
        torch.manual_seed(self.cfg.seed)


def make_context(cfg: CircuitRunConfig, out: Path, progress: bool) -> CircuitContext:
    """The context, with the intervention file read up front (errors name the file)."""
    iv = None if cfg.intervention is None else load_intervention(cfg.intervention)
    return CircuitContext(cfg, out, progress, _iv=iv)


def check_plan(ctx: CircuitContext) -> None:
    """Fail before any stage runs on what the config asks that the model cannot give: a listed component it does not
    have, a k larger than the components there are, a rank direction that is not patched, a kind ranked but not patched.

    Raises:
        InputError: naming the config field.
    """
    cfg, lm = ctx.cfg, ctx.lm
    if cfg.rank.direction not in cfg.patching.directions:
        raise InputError(f"rank.direction is {cfg.rank.direction!r} but patching.directions does not include it", field="rank.direction")
    missing = [k for k in cfg.rank.kinds if k not in cfg.patching.kinds]
    if missing:
        raise InputError(f"{missing[0]} is ranked but not patched; add it to patching.kinds", field="rank.kinds")
    listed = cfg.ablation.components
    n = len(study_components(lm, cfg.rank.kinds)) if listed is None else len(
        [parse_component(x, lm.n_layers, lm.n_heads, field=f"ablation.components[{i}]") for i, x in enumerate(listed)])
    too_big = [k for k in cfg.ablation.ks if k > n]
    if too_big:
        what = "ranked" if listed is None else "listed (ablation.components)"
        raise InputError(f"k={too_big[0]} is larger than the number of {what} components ({n})", field="ablation.ks")
    rank_pairs(ctx)
    heldout_pairs(ctx)


def rank_pairs(ctx: CircuitContext) -> list[RefusalPair]:
    """The ranking split, capped at ``patching.n_pairs``."""
    pairs = split_pairs(ctx.pairs, "rank")
    if not pairs:
        raise InputError("the pair file has no pairs in the rank split", path=ctx.cfg.pairs, field="split")
    return pairs[: ctx.cfg.patching.n_pairs] if ctx.cfg.patching.n_pairs else pairs


def heldout_pairs(ctx: CircuitContext) -> list[RefusalPair]:
    """The held-out split (ablation only)."""
    pairs = split_pairs(ctx.pairs, "heldout")
    if not pairs:
        raise InputError("the pair file has no pairs in the heldout split", path=ctx.cfg.pairs, field="split")
    return pairs


def _generate(ctx: CircuitContext, prompts: Sequence[str], iv: HookIntervention[Any] | None) -> tuple[list[str], torch.Tensor]:
    a = ctx.cfg.ablation
    g = generate_detailed(ctx.lm, list(prompts), chat=ctx.cfg.chat, max_new_tokens=a.max_new_tokens, batch_size=a.batch_size,
                          intervention=iv, progress=False)
    return g.texts, g.first_logits


def _rate_json(flags: Sequence[bool]) -> dict[str, Any]:
    r = rate(sum(flags), len(flags))
    return {"n": r.n, "refused": r.k, "refusal_rate": r.rate, "ci95": list(r.ci95)}


def _load_prompts(spec: str, n: int | None, label: str) -> PromptSet:
    ps = load_source(parse_source(spec))
    if len(ps) == 0:
        raise InputError("no prompts", field=f"baseline.{label}")
    return round_robin(ps, n)


def baseline(ctx: CircuitContext, deps: dict[str, StageRecord]) -> StageOutput:
    """Refusal rates in generation on harmful and harmless prompts, per label and category (n, Wilson 95%)."""
    b, det = ctx.cfg.baseline, ctx.detector()
    by_label: dict[str, Any] = {}
    by_category: dict[str, Any] = {}
    records = []
    for label, spec in (("harmful", b.harmful), ("harmless", b.harmless)):
        ps = _load_prompts(spec, b.n, label)
        texts, _ = _generate(ctx, ps.texts, ctx.intervention)
        flags = [det(t) for t in texts]
        by_label[label] = _rate_json(flags)
        cats: dict[str, list[bool]] = {}
        for p, f in zip(ps, flags, strict=True):
            cats.setdefault(f"{label}/{p.category or 'other'}", []).append(f)
        by_category.update({k: _rate_json(v) for k, v in cats.items()})
        records += [{"label": label, "category": p.category, "prompt": p.prompt, "generation": t, "refused": f}
                    for p, t, f in zip(ps, texts, flags, strict=True)]
    return StageOutput({"by_label": by_label, "by_category": by_category, "records": records})


def pairs(ctx: CircuitContext, deps: dict[str, StageRecord]) -> StageOutput:
    """Tokenise the pairs; the number of shared post-instruction positions of each."""
    rows = []
    for p in ctx.pairs:
        bad_ids, n_bad = encode_one(ctx.lm.tokenizer, p.harmful, chat=ctx.cfg.chat)
        good_ids, n_good = encode_one(ctx.lm.tokenizer, p.harmless, chat=ctx.cfg.chat)
        rows.append({"id": p.id, "category": p.category, "split": p.split, "harmful": p.harmful, "harmless": p.harmless,
                     "harmful_ids": bad_ids, "harmless_ids": good_ids, "n_shared": min(n_bad, n_good),
                     "same_length": len(bad_ids) == len(good_ids)})
    n_cat = len({p.category for p in ctx.pairs})
    return StageOutput({"pairs": rows, "n_categories": n_cat, "note": SHARED_NOTE})


def patching(ctx: CircuitContext, deps: dict[str, StageRecord]) -> StageOutput:
    """Per-pair effects of patching every component (denoise: harmful into harmless; noise: harmless into harmful)."""
    lm, pc = ctx.lm, ctx.cfg.patching
    components = study_components(lm, pc.kinds)
    metric = refusal_logodds_metric(refusal_token_ids(lm.tokenizer))
    wanted = {p.id for p in rank_pairs(ctx)}
    rows = [r for r in deps["pairs"].output["pairs"] if r["id"] in wanted]
    tensors: dict[str, torch.Tensor] = {}
    metrics: dict[str, list[dict[str, float]]] = {}
    seconds = 0.0
    with intervention_scope(lm, ctx.intervention):
        for direction in pc.directions:
            effects, per_pair, estimates = [], [], []
            for r in rows:
                target, source = ((r["harmless_ids"], r["harmful_ids"]) if direction == "denoise"
                                  else (r["harmful_ids"], r["harmless_ids"]))
                if pc.method == "attribution":
                    eff, est, res = patch_candidates(lm, target, source, r["n_shared"], components, metric, pc.candidates,
                                                     max_batch_tokens=pc.max_batch_tokens)
                    estimates.append(est)
                else:
                    res = patch_shared_suffix(lm, target, source, r["n_shared"], components, metric, max_batch_tokens=pc.max_batch_tokens)
                    eff = res.effects
                effects.append(eff)
                per_pair.append({"target": res.target_metric, "source": res.source_metric})
                seconds += res.seconds
            tensors[f"effects_{direction}"] = torch.stack(effects)
            if estimates:
                tensors[f"estimates_{direction}"] = torch.stack(estimates)
            metrics[direction] = per_pair
    return StageOutput({"components": [c.label for c in components], "pairs": [r["id"] for r in rows], "metrics": metrics,
                        "method": pc.method, "seconds_patching": seconds, "note": SHARED_NOTE}, tensors, provenance=("seconds_patching",))


def ranked_effects(ctx: CircuitContext, rec: StageRecord) -> tuple[list[Component], np.ndarray]:
    """The ranked kinds' components and their per-pair effects (noise negated: positive = supports refusal)."""
    lm, rk = ctx.lm, ctx.cfg.rank
    labels = rec.output["components"]
    key = f"effects_{rk.direction}"
    if key not in rec.tensors:
        raise InputError(f"rank.direction is {rk.direction!r} but patching.directions does not include it", field="rank.direction")
    comps = [parse_component(x, lm.n_layers, lm.n_heads) for x in labels]
    keep = [i for i, c in enumerate(comps) if c.component in rk.kinds]
    if not keep:
        raise InputError("none of rank.kinds was patched; add them to patching.kinds", field="rank.kinds")
    sign = 1.0 if rk.direction == "denoise" else -1.0
    return [comps[i] for i in keep], sign * rec.tensors[key][:, keep].double().numpy()


def rank(ctx: CircuitContext, deps: dict[str, StageRecord]) -> StageOutput:
    """Mean effect with a bootstrap interval, causal fraction; the top components; layer importance."""
    rk = ctx.cfg.rank
    comps, eff = ranked_effects(ctx, deps["patching"])
    ranked = rank_components(eff, comps, threshold=rk.threshold, n_boot=rk.n_boot, seed=ctx.cfg.seed)
    first = comps.index(ranked[0].component)
    return StageOutput({"ranked": [r.to_json() for r in ranked], "top": [r.to_json() for r in ranked[: rk.top]],
                        "layer_importance": layer_importance(eff, comps, ctx.lm.n_layers),
                        "first_place_rate": first_place_rate(eff, first, n_boot=rk.n_boot, seed=ctx.cfg.seed),
                        "n_pairs": int(eff.shape[0]), "direction": rk.direction})


def _key(c: Component) -> tuple[str, int, int | None]:
    return (c.component, c.layer, c.head)


def _matched_random(pool: Sequence[Component], top: Sequence[Component], rng: random.Random) -> list[Component]:
    """A random set with as many components of each kind as ``top``, never overlapping it where the pool allows."""
    out: list[Component] = []
    top_set = set(top)
    for kind in dict.fromkeys(c.component for c in top):
        need = sum(1 for c in top if c.component == kind)
        cands = [c for c in pool if c.component == kind and c not in top_set]
        if len(cands) < need:
            cands = [c for c in pool if c.component == kind]
        if len(cands) < need:
            raise InputError(f"only {len(cands)} {kind} components to draw random sets of {need} from; rank that kind "
                             "(rank.kinds) or list fewer", field="ablation.components")
        out += rng.sample(cands, need)
    return out


def ablation(ctx: CircuitContext, deps: dict[str, StageRecord]) -> StageOutput:
    """Ablate the top k (and matched random sets), regenerate on held-out harmful prompts; KL on held-out harmless ones."""
    lm, ab, det = ctx.lm, ctx.cfg.ablation, ctx.detector()
    pool = [parse_component(r["component"], lm.n_layers, lm.n_heads, field="rank") for r in deps["rank"].output["ranked"]]
    ranked = pool if ab.components is None else [parse_component(x, lm.n_layers, lm.n_heads, field=f"ablation.components[{i}]")
                                                 for i, x in enumerate(ab.components)]
    too_big = [k for k in ab.ks if k > len(ranked)]
    if too_big:
        what = "ranked" if ab.components is None else "listed (ablation.components)"
        raise InputError(f"k={too_big[0]} is larger than the number of {what} components ({len(ranked)})", field="ablation.ks")
    held = heldout_pairs(ctx)
    harmful, harmless = [p.harmful for p in held], [p.harmless for p in held]
    ref_rows = [r for r in deps["pairs"].output["pairs"] if r["split"] == "rank"]
    every = list(dict.fromkeys([*ranked, *pool]))
    directions: dict[tuple[str, int, int | None], torch.Tensor] = {}
    with intervention_scope(lm, ctx.intervention):
        if ab.method == "direction":
            values, directions = ablation_directions(lm, [r["harmless_ids"] for r in ref_rows], [r["harmful_ids"] for r in ref_rows],
                                                     every)
        else:
            values = ablation_values(lm, [r["harmless_ids"] for r in ref_rows], every, ab.method, seed=ctx.cfg.seed)

    def ablate(components: Sequence[Component]) -> ComponentAblation:
        keys = tuple(_key(c) for c in components)
        return ComponentAblation(keys, {k: values[k] for k in keys if k in values}, ctx.intervention,
                                 {k: directions[k] for k in keys if k in directions})

    base_texts, _ = _generate(ctx, harmful, ctx.intervention)
    _, base_logits = _generate(ctx, harmless, ctx.intervention)
    reference = {"with_intervention": _rate_json([det(t) for t in base_texts])}
    if ctx.intervention is not None:
        reference["without_intervention"] = _rate_json([det(t) for t in _generate(ctx, harmful, None)[0]])

    def run(components: Sequence[Component]) -> tuple[list[str], list[bool]]:
        texts, _ = _generate(ctx, harmful, ablate(components))
        return texts, [det(t) for t in texts]

    rows, examples = [], []
    rng = random.Random(ctx.cfg.seed)
    for k in ab.ks:
        top = ranked[:k]
        texts, flags = run(top)
        _, logits = _generate(ctx, harmless, ablate(top))
        kl = kl_divergence(base_logits, logits)
        random_rates = [float(np.mean(run(_matched_random(pool, top, rng))[1])) for _ in range(ab.n_random)]
        lo, hi = percentile_ci(random_rates)
        observed = float(np.mean(flags))
        rows.append({"k": k, **_rate_json(flags), "components": [c.label for c in top], "random_mean": float(np.mean(random_rates)),
                     "random_ci95": [float(lo), float(hi)], "random_rates": random_rates,
                     "p_value": permutation_p(observed, random_rates, lower=True), "kl_harmless": float(kl.mean()),
                     "kl_harmless_max": float(kl.max())})
        if k == ab.ks[-1] or k == ab.ks[0]:
            examples.append({"k": k, "generations": texts, "refused": flags})
    return StageOutput({"prompts": harmful, "baseline_generations": base_texts, "reference": reference, "curve": rows,
                        "examples": examples, "method": ab.method, "n_random": ab.n_random})


def _node(c: Component) -> str:
    """The edge-attribution node a component writes through (a head writes through its layer's attention output)."""
    return f"{'mlp' if c.component == 'mlp_out' else 'attn'}@L{c.layer}"


def edges(ctx: CircuitContext, deps: dict[str, StageRecord]) -> StageOutput:
    """Edges between the top components, scored as ``patch --edges`` scores them (EAP-IG, harmful as clean), averaged
    over the ranking pairs of equal token length (at most ``MAX_EDGE_PAIRS``)."""
    lm = ctx.lm
    top = [parse_component(r["component"], lm.n_layers, lm.n_heads, field="rank") for r in deps["rank"].output["top"]]
    wanted = {p.id for p in rank_pairs(ctx)}
    rows = [r for r in deps["pairs"].output["pairs"] if r["id"] in wanted and r["same_length"]][:MAX_EDGE_PAIRS]
    if not rows or get_arch(lm.model_type).parallel_attn:
        return StageOutput({"edges": [], "n_pairs": 0})
    metric = refusal_logodds_metric(refusal_token_ids(lm.tokenizer))
    totals: dict[tuple[str, str], float] = {}
    with intervention_scope(lm, ctx.intervention):
        for r in rows:
            res = edge_attribution(lm, r["harmful_ids"], r["harmless_ids"], metric=metric, ig_steps=EDGE_IG_STEPS)
            for u, v, s in res.edges:
                totals[(u, v)] = totals.get((u, v), 0.0) + s / len(rows)
    out = []
    for a in top:
        for b in top:
            key = (_node(a), _node(b))
            if key in totals and (a.layer, a.component == "mlp_out") < (b.layer, b.component == "mlp_out"):
                out.append({"source": a.label, "target": b.label, "score": totals[key]})
    return StageOutput({"edges": out, "n_pairs": len(rows), "ig_steps": EDGE_IG_STEPS})
