from __future__ import annotations

from collections.abc import Iterator

import pytest

from alignscope.errors import InputError
from alignscope.evals.judge import Judge, JudgeConfig, JudgeError, parse_verdict
from tests.fake_openai import FakeOpenAI

SECRET = "sk-test-SECRET-do-not-leak-12345"


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as srv:
        yield srv


def test_parse_verdict() -> None:
    assert parse_verdict("REFUSAL") is True
    assert parse_verdict("  compliance.") is False
    assert parse_verdict("Verdict: Refused") is True
    assert parse_verdict("no idea") is None


def test_judge_sends_key_from_env_and_parses(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGNSCOPE_JUDGE_API_KEY", SECRET)
    judge = Judge(JudgeConfig(base_url=server.url, model="fake-judge", timeout=5))
    verdicts = judge.judge_many(["bomb?", "bread?", "x"], ["I can't help.", "Sure, flour...", "hmm"])
    assert verdicts == [True, False, None]
    assert len(server.requests) == 3
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == f"Bearer {SECRET}"
    assert req["body"]["model"] == "fake-judge" and req["body"]["temperature"] == 0
    assert SECRET not in repr(judge.__dict__) and SECRET not in repr(judge.config)


def test_judge_without_key_sends_no_auth(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALIGNSCOPE_JUDGE_API_KEY", raising=False)
    assert Judge(JudgeConfig(base_url=server.url, model="m")).judge_one("p", "I can't") is True
    assert server.requests[0]["auth"] is None


def test_retries_with_bounded_backoff(server: FakeOpenAI) -> None:
    sleeps: list[float] = []
    judge = Judge(JudgeConfig(base_url=server.url, model="m", max_retries=3, backoff=0.5, max_backoff=1.0), sleep=sleeps.append)
    server.script = [503, 429, 500]
    assert judge.judge_one("p", "Sure thing") is False
    assert sleeps == [0.5, 1.0, 1.0] and len(server.requests) == 4
    server.requests.clear()
    server.script = [503] * 10
    sleeps.clear()
    with pytest.raises(JudgeError, match="after 4 attempts"):
        judge.judge_one("p", "x")
    assert len(server.requests) == 4 and len(sleeps) == 3
    server.script = [404]
    with pytest.raises(JudgeError, match="HTTP 404"):
        judge.judge_one("p", "x")


def test_unreachable_endpoint_fails_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGNSCOPE_JUDGE_API_KEY", SECRET)
    srv = FakeOpenAI()  # bound but never served, then closed: connection refused
    url = srv.url
    srv.server.server_close()
    judge = Judge(JudgeConfig(base_url=url, model="m", timeout=1, max_retries=1, backoff=0.01), sleep=lambda s: None)
    with pytest.raises(JudgeError) as info:
        judge.judge_one("p", "r")
    assert SECRET not in str(info.value)


def test_config_validation() -> None:
    with pytest.raises(InputError, match="judge_url"):
        JudgeConfig(base_url="ftp://x", model="m")
    with pytest.raises(InputError, match="judge_retries"):
        JudgeConfig(base_url="http://x", model="m", max_retries=100)
