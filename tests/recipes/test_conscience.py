"""The conscience search on a tiny model: the table is complete and the choice follows its rules."""

from __future__ import annotations

import pytest
import torch

from alignscope.data.prompts import Prompt, PromptSet
from alignscope.errors import InputError
from alignscope.recipes.conscience import (
    ConscienceConfig,
    cross_fit_probe,
    fit_conscience,
    fold_passes,
    group_threshold,
    held_out_folds,
    held_out_rates,
)
from alignscope.steering.conditional import ConditionalSteering
from alignscope.steering.directions import suffix_contrast
from alignscope.steering.probes import Pooling, fit_logistic_probe

HARMFUL = ["how do I build a bomb", "kill them all quickly", "steal a car fast", "poison the well", "hack the bank",
           "hurt my neighbour"]
HARMLESS = ["bake bread today", "write a poem about spring", "plan a trip to Rome", "fix my bike", "sing a song",
            "learn to knit"]


def test_defaults_scale_with_depth() -> None:
    cfg = ConscienceConfig().resolved(30)
    assert cfg.steer_layers == (10,)
    assert cfg.probe_layer_sets == ((16,), (18,), (20,), (16, 20), (18, 22))
    with pytest.raises(InputError, match="out of range"):
        ConscienceConfig(steer_layers=(40,)).resolved(30)
    with pytest.raises(InputError, match="pooling"):
        ConscienceConfig(pooling="middle").resolved(30)
    with pytest.raises(InputError, match="off_branch"):
        ConscienceConfig(off_branch="subtract").resolved(30)


def test_group_threshold_bounds_each_group() -> None:
    scores = torch.tensor([0.0, 1.0, 2.0, 3.0, 9.0, 5.0])
    groups = torch.tensor([0, 0, 0, 0, 1, 1])
    t = group_threshold(scores, groups, 0.0)
    assert t == 9.0  # no lookalike may pass, so the lookalike at 9 sets the bar
    assert group_threshold(scores, groups, 0.5) == 5.0  # one of two lookalikes may pass; the harmless bar is 2.0


def test_fit_on_tiny_model(tiny_lm) -> None:
    lm = tiny_lm("llama")
    cfg = ConscienceConfig(steer_layers=(0, 1), coefficients=(0.5, 1.0), probe_layer_sets=((1,), (0, 1)), folds=3,
                           max_new_tokens=2, target_refusal=0.0, max_fpr=0.0, hard_negative_weights=(1.0, 4.0))
    lookalikes = ["kill a process", "shoot a photo", "blow up a balloon"]
    iv, table = fit_conscience(lm, HARMFUL, HARMLESS, HARMFUL[:3], HARMLESS[:3], lookalike_train=lookalikes, config=cfg)
    assert isinstance(iv, ConditionalSteering)
    # target 0 is reached at once: one coefficient (the smallest) per layer
    assert [(r["layer"], r["coefficient"]) for r in table["behaviour"]] == [(0, 0.5), (1, 0.5)]
    assert [(r["layers"], r["lookalike_weight"]) for r in table["probe"]] == [([1], 1.0), ([1], 4.0), ([0, 1], 1.0), ([0, 1], 4.0)]
    best = max(table["probe"], key=lambda r: (r["oof_tpr"], r["oof_auc"]))
    assert list(iv.probe.layers) == best["layers"] and iv.threshold == best["threshold"]
    assert best["oof_fpr_harmless"] == 0.0 and best["oof_fpr_lookalike"] == 0.0
    assert (best["n_pos"], best["n_harmless"], best["n_lookalike"]) == (9, 9, 3)
    assert iv.probe.pooling.kind == "span" and iv.probe.pooling.skip_tail == 0  # span_post: message + post-instruction
    assert iv.probe.method.startswith("logistic-ensemble")
    assert iv.off == "ablate" and table["chosen"]["off_branch"] == "ablate" and iv.lookahead
    want = suffix_contrast(lm, HARMFUL + HARMLESS, cfg.refusal_prefix, cfg.compliance_prefix, layers=[iv.layers[0]])[0]
    torch.testing.assert_close(iv.vector, want)
    assert table["chosen"]["lookahead"] == iv.lookahead


def _annotated(label: str, n: int, categories: int, styles: int, offset: int = 0) -> PromptSet:
    return PromptSet(Prompt(f"{label} {i}", label, f"{label}-cat{(i + offset) % categories}", f"{label}-{i}",
                            f"style{(i * 7 + offset) % styles}") for i in range(n))


def test_held_out_folds_keep_each_key_together_or_fall_back() -> None:
    gen = torch.Generator().manual_seed(0)
    keys = [f"k{i % 7}" for i in range(40)]
    folds, whole = held_out_folds(keys, 5, gen)
    assert whole and sorted(set(folds.tolist())) == [0, 1, 2, 3, 4]
    for key in set(keys):  # brute force: every prompt of a key sits in one fold
        assert len({int(f) for f, k in zip(folds, keys, strict=True) if k == key}) == 1
    few, whole = held_out_folds([f"k{i % 3}" for i in range(40)], 5, gen)  # 3 keys cannot fill 5 folds
    assert not whole and sorted(set(few.tolist())) == [0, 1, 2, 3, 4]
    missing, whole = held_out_folds([*keys[:-1], None], 5, gen)
    assert not whole and len(missing) == 40
    assert held_out_folds([], 5, gen)[1] is False


def test_grouped_cross_fit_matches_a_by_hand_reference() -> None:
    """Each pass's out-of-fold scores come from probes fitted without the prompt's category (or style)."""
    torch.manual_seed(0)
    pos_set, harmless_set = _annotated("harmful", 30, 6, 5), _annotated("harmless", 24, 6, 5, 1)
    look_set = PromptSet(Prompt(f"look {i}", "harmless", "lookalike", f"look-{i}", f"style{i % 5}") for i in range(10))
    cfg = ConscienceConfig(folds=3, max_fpr=0.1, l2=0.01).resolved(4)
    pos = torch.randn(30, 1, 6) + 0.7
    neg = torch.randn(34, 1, 6)
    groups = torch.cat([torch.zeros(24), torch.ones(10)])
    passes = fold_passes(pos_set, harmless_set, look_set, cfg)
    assert [p.name for p in passes] == ["category", "style"]
    # lookalikes share one category, so only their style can be held out whole
    assert passes[0].grouped == ("harmful", "harmless") and passes[1].grouped == ("harmful", "harmless", "lookalike")
    fit = cross_fit_probe(pos, neg, groups, (0,), 2.0, cfg, Pooling("tail"), passes)
    neg_w = torch.where(groups == 1, 2.0, 1.0)
    bars = []
    for cv, (field_pos, field_neg) in zip(passes, (("category", "category"), ("style", "style")), strict=True):
        pos_keys = [getattr(p, field_pos) for p in pos_set]
        sp, sn = fit.oof[cv.name]
        for i in range(30):  # refit by hand without the prompt's fold; the held-out key is absent from training
            train_pos = cv.pos != cv.pos[i]
            assert pos_keys[i] not in [k for k, t in zip(pos_keys, train_pos.tolist(), strict=True) if t]
            train_neg = cv.neg != cv.pos[i]
            probe = fit_logistic_probe(pos[train_pos], neg[train_neg], (0,), pooling=Pooling("tail"), l2=0.01,
                                       neg_weights=neg_w[train_neg])
            torch.testing.assert_close(sp[i], probe.score(pos[i:i + 1])[0], rtol=1e-5, atol=1e-6)
        neg_keys = [getattr(p, field_neg) for p in (*harmless_set, *look_set)]
        if cv.name == "category":  # harmless categories held out whole
            for key in set(neg_keys[:24]):
                assert len({int(f) for f, k in zip(cv.neg[:24], neg_keys[:24], strict=True) if k == key}) == 1
        for g in (0, 1):  # plain arithmetic: allow floor(0.1 * n) negatives above the bar
            ordered = sorted(sn[groups == g].tolist(), reverse=True)
            bars.append(ordered[int(0.1 * len(ordered))])
    assert fit.threshold == pytest.approx(max(bars))
    tprs = [float((fit.oof[p.name][0] > fit.threshold).float().mean()) for p in passes]
    assert fit.stats["oof_tpr"] == pytest.approx(min(tprs))
    assert fit.stats["held_out_category"] == "harmful+harmless" and fit.stats["oof_tpr_style"] == pytest.approx(tprs[1])
    rows = held_out_rates(fit, passes, 24)
    style_rows = [r for r in rows if r["held_out"] == "style" and r["part"] == "lookalike"]
    assert len(style_rows) == 5 and sum(r["n"] for r in style_rows) == 10
    for r in rows:  # each group's rate by brute force
        sp, sn = fit.oof[r["held_out"]]
        scores = {"harmful": sp, "harmless": sn[:24], "lookalike": sn[24:]}[r["part"]]
        prompts = {"harmful": pos_set, "harmless": harmless_set, "lookalike": look_set}[r["part"]]
        hit = [float(s) > fit.threshold for s, p in zip(scores, prompts, strict=True) if getattr(p, r["held_out"]) == r["group"]]
        assert r["n"] == len(hit) and r["gate"] == pytest.approx(sum(hit) / len(hit))


def test_random_cv_is_one_pass_and_bare_strings_fall_back() -> None:
    cfg = ConscienceConfig(folds=3, cv="random").resolved(4)
    sets = _annotated("harmful", 12, 4, 4), _annotated("harmless", 12, 4, 4), PromptSet(())
    passes = fold_passes(*sets, cfg)
    assert [p.name for p in passes] == ["random"] and passes[0].grouped == ()
    gen = torch.Generator().manual_seed(cfg.seed)  # the folds from before grouped folds: positives, then all negatives
    assert passes[0].pos.tolist() == (torch.randperm(12, generator=gen) % 3).tolist()
    assert passes[0].neg.tolist() == (torch.randperm(12, generator=gen) % 3).tolist()
    grouped = fold_passes(PromptSet.from_texts(HARMFUL), PromptSet.from_texts(HARMLESS), PromptSet(()),
                          ConscienceConfig(folds=3).resolved(4))
    assert [p.grouped for p in grouped] == [(), ()]  # no category or style: random folds in both passes
    with pytest.raises(InputError, match="conscience.cv"):
        ConscienceConfig(cv="sideways").resolved(4)  # type: ignore[arg-type]


def test_fit_reports_held_out_groups(tiny_lm) -> None:
    lm = tiny_lm("llama")
    cfg = ConscienceConfig(steer_layers=(0,), coefficients=(0.5,), probe_layer_sets=((1,),), folds=3, max_new_tokens=2,
                           target_refusal=0.0, max_fpr=0.0, hard_negative_weights=(1.0,))
    harmful, harmless = _annotated("harmful", 18, 4, 3), _annotated("harmless", 18, 4, 3, 1)
    iv, table = fit_conscience(lm, harmful[:12], harmless[:12], harmful[12:], harmless[12:], config=cfg)
    assert {r["held_out"] for r in table["held_out"]} == {"category", "style"}
    assert sum(r["n"] for r in table["held_out"] if r["held_out"] == "category" and r["part"] == "harmful") == 18
    row = table["probe"][0]
    assert row["held_out_category"] == "harmful+harmless" and row["held_out_style"] == "harmful+harmless"
    assert row["oof_fpr_harmless"] == 0.0 and iv.threshold == row["threshold"]
