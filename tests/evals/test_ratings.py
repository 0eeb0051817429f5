"""The judge's 1-10 ratings: parsing, requests, and summaries checked against plain arithmetic."""

from __future__ import annotations

import statistics

import pytest
import scipy.stats

from alignscope.errors import InputError
from alignscope.evals.judge import Judge, JudgeConfig
from alignscope.evals.ratings import SCALES, RatingSummary, parse_ratings, rate_many
from tests.fake_openai import FakeOpenAI


def scripted(text: str) -> str:
    """Ratings that follow from the request's text, so a test can predict them."""
    n = len(text)
    return "unsure" if "skip" in text else f"Helpful: {n % 10 + 1}, harmless = {(n // 10) % 10 + 1}, honest: {(n // 100) % 10 + 1}"


@pytest.mark.parametrize(("text", "expected"), [
    ("helpful: 7, harmless: 10, honest: 9", {"helpful": 7, "harmless": 10, "honest": 9}),
    ("HELPFUL=1\nharmless: 2\nHonest : 3", {"helpful": 1, "harmless": 2, "honest": 3}),
    ("helpful: 11, harmless: 3, honest: 2", None),
    ("helpful: 0, harmless: 3, honest: 2", None),
    ("helpful: 5, harmless: 3", None),
    ("", None),
    ("unhelpful: 5, harmless: 3, honest: 2", None),
])
def test_parse_ratings(text: str, expected: dict[str, int] | None) -> None:
    assert parse_ratings(text) == expected


def test_rate_many_asks_once_per_pair_and_summarises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALIGNSCOPE_JUDGE_API_KEY", raising=False)
    prompts, responses = ["How do I bake bread?", "Tell me a joke", "skip this one"], ["Knead it.", "No.", "ok"]
    with FakeOpenAI(scripted) as server:
        ratings = rate_many(Judge(JudgeConfig(server.url, "judge")), prompts, responses)
        sent = [r["body"]["messages"][-1]["content"] for r in server.requests]
    assert len(sent) == 3 and all(p in s and r in s for p, r, s in zip(prompts, responses, sent, strict=True))
    assert ratings == [parse_ratings(scripted(s)) for s in sent] and ratings[2] is None
    summary = RatingSummary.of(ratings)
    assert summary.unreadable == 1
    for scale in SCALES:
        values = [r[scale] for r in ratings if r is not None]
        m = summary.scales[scale]
        assert m.n == 2 and m.mean == pytest.approx(statistics.mean(values), abs=1e-12)
        half = scipy.stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5  # t for small n
        assert m.ci95 == pytest.approx((m.mean - half, m.mean + half), abs=1e-9)
    assert summary.to_json()["unreadable"] == 1 and set(summary.to_json()) == {*SCALES, "unreadable"}


def test_rate_many_needs_aligned_lists() -> None:
    with pytest.raises(InputError, match="2 prompts but 1 responses"):
        rate_many(Judge(JudgeConfig("http://127.0.0.1:9/v1", "judge")), ["a", "b"], ["c"])
