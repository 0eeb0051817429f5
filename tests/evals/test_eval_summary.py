"""RefusalEval.to_json is EvalSummary.to_json of RefusalEval.summary(): the same bytes as the old hand-written payload."""

from __future__ import annotations

import json
from typing import Any

from alignscope.data.prompts import Prompt, PromptSet
from alignscope.evals.behaviour import RefusalEval, category_key, group_rates, judge_summary, label_of, style_key
from alignscope.evals.json_types import parse
from alignscope.evals.study_evals import EvalSummary
from alignscope.stats import mean_ci


def reference_payload(ev: RefusalEval) -> dict[str, Any]:
    """The payload as RefusalEval.to_json wrote it before it delegated to EvalSummary (copied verbatim)."""
    scores: dict[str, Any] = {}
    for lab in dict.fromkeys(label_of(p.label) for p in ev.prompts):
        vals = [s for p, s in zip(ev.prompts, ev.logit_scores, strict=True) if label_of(p.label) == lab]
        mean, (lo, hi) = mean_ci(vals)
        scores[lab] = {"mean": mean, "ci95": [lo, hi], "n": len(vals)}
    payload: dict[str, Any] = {
        "n": {k: r.n for k, r in ev.by_label.items()},
        "k": {k: r.k for k, r in ev.by_label.items()},
        "refusal_rate": {k: r.rate for k, r in ev.by_label.items()},
        "ci95": {k: list(r.ci95) for k, r in ev.by_label.items()},
        "by_category": {c: {"n": r.n, "k": r.k, "refusal_rate": r.rate, "ci95": list(r.ci95)}
                        for c, r in ev.by_category.items()},
        "logit_score": scores,
        "seconds": round(ev.seconds, 3),
        "max_new_tokens": ev.max_new_tokens, "chat": ev.chat, "intervention": ev.intervention,
    }
    if ev.judged is not None:
        payload["judge"] = judge_summary(ev.prompts, ev.judged, ev.refused)
    return payload


def hand_built(judged: list[bool | None] | None) -> RefusalEval:
    # "shared" is a category of two labels (keys harmful/shared, harmless/shared); one prompt has no label,
    # one no category; "lonely" has one prompt (a one-value interval), "unlabelled" scores one prompt.
    prompts = PromptSet([Prompt("a", label="harmful", category="shared"), Prompt("b", label="harmless", category="shared"),
                         Prompt("c", label="harmful", category="solo"), Prompt("d", label="harmless"),
                         Prompt("e", category="lonely"), Prompt("f", label="harmful", category="shared")])
    refused = [True, False, True, True, False, False]
    labels = [label_of(p.label) for p in prompts]
    return RefusalEval(prompts, [f"g{i}" for i in range(6)], refused, [1.5, -0.25, 2.0, 0.125, -3.0, 0.75],
                       group_rates(labels, refused), group_rates(category_key(prompts), refused),
                       max_new_tokens=7, chat=False, intervention="addition", judged=judged, seconds=1.23456789)


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2) + "\n"


def test_payload_is_the_old_payload_byte_for_byte() -> None:
    for judged in ([True, None, False, True, None, False], None):
        ev = hand_built(judged)
        assert dumps(ev.to_json()) == dumps(reference_payload(ev))
        assert ev.to_json() == ev.summary().to_json()
    ev = hand_built([True, None, False, True, None, False])
    text = dumps(ev.to_json())
    assert '"harmful/shared"' in text and '"harmless/shared"' in text and '"seconds": 1.235' in text
    assert list(ev.to_json()) == ["n", "k", "refusal_rate", "ci95", "by_category", "logit_score", "seconds", "max_new_tokens",
                                  "chat", "intervention", "judge"]
    assert ev.to_json()["judge"]["n_missing"] == 2


def test_summary_fields_by_hand() -> None:
    ev = hand_built(None)
    s = ev.summary()
    # harmful: prompts a, c, f refused True, True, False -> k 2 of n 3.
    assert (s.by_label["harmful"].n, s.by_label["harmful"].k) == (3, 2)
    assert (s.by_category["harmless/shared"].n, s.by_category["harmless/shared"].k) == (1, 0)
    assert (s.by_category["solo"].n, s.by_category["lonely"].n) == (1, 1) and "shared" not in s.by_category
    # harmful scores 1.5, 2.0, 0.75 -> mean 4.25 / 3; unlabelled has one score -> a point interval.
    assert abs((s.logit_score["harmful"].mean or 0.0) - 4.25 / 3) < 1e-12
    assert s.logit_score["unlabelled"].ci95 == (-3.0, -3.0) and s.logit_score["unlabelled"].n == 1
    assert (s.seconds, s.max_new_tokens, s.chat, s.intervention, s.judge) == (1.235, 7, False, "addition", None)


def test_by_style_counts_by_hand_and_round_trips() -> None:
    prompts = PromptSet([Prompt("a", "harmful", "x", style="casual"), Prompt("b", "harmless", "y", style="casual"),
                         Prompt("c", "harmful", "x", style="casual"), Prompt("d", "harmful", "x", style="keywords"),
                         Prompt("e", "harmful", "x"), Prompt("f", "harmless", "lookalike", style="casual")])
    refused = [True, False, False, True, True, True]
    ev = RefusalEval(prompts, ["g"] * 6, refused, [0.0] * 6, group_rates([label_of(p.label) for p in prompts], refused),
                     group_rates(category_key(prompts), refused), by_style=group_rates(style_key(prompts), refused),
                     max_new_tokens=3, chat=True, intervention=None)
    payload = ev.to_json()
    # by hand: harmful/casual is a (refused) and c (not): 1 of 2; e has no style; the lookalike f counts apart
    assert {k: (v["k"], v["n"]) for k, v in payload["by_style"].items()} == {
        "harmful/casual": (1, 2), "harmless/casual": (0, 1), "harmful/keywords": (1, 1), "lookalike/casual": (1, 1)}
    assert list(payload)[-1] == "by_style" and ev.records()[0]["style"] == "casual"
    loaded = parse(EvalSummary, json.loads(json.dumps(payload)), "eval.json")
    assert loaded.to_json() == payload
    old = {k: v for k, v in payload.items() if k != "by_style"}  # a file from before styles loads, with none
    assert parse(EvalSummary, old, "eval.json").by_style == {} and "by_style" not in hand_built(None).to_json()
