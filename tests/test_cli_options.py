"""The shared CLI model and judge options (``model_options``/``ModelOptions``, ``judge_options``/``JudgeOptions``)
and component flags parsed at the boundary."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
import typer
from typer.testing import CliRunner

from alignscope.cli import app
from alignscope.cli.common import JsonOpt, JudgeOptions, ModelOptions, judge_options, model_options
from alignscope.errors import InputError
from alignscope.evals.judge import Judge

runner = CliRunner()


def _toy(**flags: Any) -> tuple[typer.Typer, list[ModelOptions], Any]:
    """A one-command app whose command records the ModelOptions it receives."""
    seen: list[ModelOptions] = []
    toy = typer.Typer()

    @toy.command()
    @model_options(**flags)
    def cmd(first: str = "a", model: ModelOptions = ModelOptions(), last: int = 1, json_out: JsonOpt = False) -> None:
        seen.append(model)

    return toy, seen, cmd


def test_flags_reach_one_model_options() -> None:
    toy, seen, _ = _toy(threads=True)
    res = runner.invoke(toy, ["--model", "m", "--dtype", "float16", "--device", "cpu", "--device-map", "auto",
                              "--load-in-4bit", "--threads", "3"])
    assert res.exit_code == 0, res.output
    assert seen == [ModelOptions(model="m", dtype="float16", device="cpu", device_map="auto", load_in_4bit=True, threads=3)]
    assert runner.invoke(toy, ["-m", "x"]).exit_code == 0
    assert seen[-1] == ModelOptions(model="x")


def test_model_takes_the_slot_and_loading_flags_precede_json() -> None:
    _, _, cmd = _toy(threads=True)
    names = list(inspect.signature(cmd).parameters)
    assert names == ["first", "model", "last", "threads", "dtype", "device", "device_map", "load_in_4bit", "json_out"]


def test_switched_off_flags_are_refused_and_keep_defaults() -> None:
    toy, seen, cmd = _toy(model=False, device_map=False, device="cpu")
    assert list(inspect.signature(cmd).parameters) == ["first", "last", "dtype", "device", "json_out"]
    for flag in (["--device-map", "auto"], ["--load-in-4bit"], ["--threads", "2"], ["--model", "m"]):
        assert runner.invoke(toy, flag).exit_code == 2, flag
    assert runner.invoke(toy, []).exit_code == 0
    assert seen == [ModelOptions(device="cpu")]


def test_load_passes_every_option_and_sets_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    import alignscope.models.loader as loader

    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(loader, "load_model", lambda *a, **k: calls.append((a, k)) or "lm")
    before = torch.get_num_threads()
    try:
        opts = ModelOptions(model="m", dtype="bfloat16", device="cuda:1", device_map="auto", load_in_4bit=True, threads=1)
        assert opts.load() == "lm"
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert calls == [(("m",), {"dtype": "bfloat16", "device": "cuda:1", "device_map": "auto", "load_in_4bit": True})]


def _judge_toy() -> tuple[typer.Typer, list[JudgeOptions], Any]:
    """A one-command app with both option groups, whose command records the JudgeOptions it receives."""
    seen: list[JudgeOptions] = []
    toy = typer.Typer()

    @toy.command()
    @model_options()
    @judge_options
    def cmd(first: str = "a", model: ModelOptions = ModelOptions(), judge: JudgeOptions = JudgeOptions(), last: int = 1,
            json_out: JsonOpt = False) -> None:
        seen.append(judge)

    return toy, seen, cmd


def test_judge_flags_take_the_slot_and_reach_one_judge_options() -> None:
    toy, seen, cmd = _judge_toy()
    assert list(inspect.signature(cmd).parameters) == ["first", "model", "judge_url", "judge_model", "judge_key_env", "judge_timeout",
                                                       "judge_retries", "last", "dtype", "device", "device_map", "load_in_4bit",
                                                       "json_out"]
    res = runner.invoke(toy, ["--judge-url", "http://h/v1", "--judge-model", "j", "--judge-key-env", "K", "--judge-timeout", "2.5",
                              "--judge-retries", "0"])
    assert res.exit_code == 0, res.output
    assert runner.invoke(toy, []).exit_code == 0
    assert seen == [JudgeOptions("http://h/v1", "j", "K", 2.5, 0),
                    JudgeOptions(None, None, "ALIGNSCOPE_JUDGE_API_KEY", 30.0, 3)]
    assert runner.invoke(toy, ["--judge-retries", "11"]).exit_code == 2
    assert runner.invoke(toy, ["--judge-timeout", "0.05"]).exit_code == 2


def test_judge_options_build() -> None:
    assert JudgeOptions().build() is None
    judge = JudgeOptions("http://127.0.0.1:9/v1", "j", "MY_KEY", 4.0, 2).build()
    assert isinstance(judge, Judge)
    assert (judge.config.base_url, judge.config.model, judge.config.api_key_env, judge.config.timeout, judge.config.max_retries) == (
        "http://127.0.0.1:9/v1", "j", "MY_KEY", 4.0, 2)
    with pytest.raises(InputError, match="field 'judge_model': the LLM judge needs both --judge-url and --judge-model"):
        JudgeOptions(judge_url="http://x").build()
    with pytest.raises(InputError, match="field 'judge_url': the LLM judge needs both"):
        JudgeOptions(judge_model="m").build()


@pytest.mark.parametrize("path", [("eval",), ("bench",)])
def test_eval_and_bench_keep_their_judge_flags(path: tuple[str, ...]) -> None:
    opts = _options(*path)
    assert [o for o in opts if o.startswith("--judge")] == ["--judge-url", "--judge-model", "--judge-key-env", "--judge-timeout",
                                                            "--judge-retries"]
    assert [opts[o].default for o in opts if o.startswith("--judge")] == [None, None, "ALIGNSCOPE_JUDGE_API_KEY", 30.0, 3]


def _options(*path: str) -> dict[str, Any]:
    """Option name -> click parameter of one real command."""
    command: Any = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return {opt: p for p in command.params for opt in p.opts}


# Each command's model flags as they were before the options were declared once.
LOADING = {"--model", "--dtype", "--device"}
BIG = {"--device-map", "--load-in-4bit"}
EXPECTED = {
    ("info",): LOADING | BIG, ("capture",): LOADING | BIG, ("eval",): LOADING | BIG, ("patch",): LOADING | BIG,
    ("trace",): LOADING | BIG, ("ablate",): LOADING | BIG, ("dla",): LOADING | BIG | {"--threads"},
    ("lens",): LOADING | BIG | {"--threads"}, ("tuned-lens", "train"): LOADING | {"--threads"},
    ("tuned-lens", "eval"): LOADING | {"--threads"}, ("dilemmas",): LOADING | {"--threads"},
    ("edit",): LOADING, ("directions",): LOADING,
}


@pytest.mark.parametrize("path", list(EXPECTED))
def test_each_command_keeps_its_model_flags(path: tuple[str, ...]) -> None:
    opts = _options(*path)
    assert {o for o in opts if o in LOADING | BIG | {"--threads"}} == EXPECTED[path]
    assert opts["--device"].default == ("cpu" if path == ("edit",) else "auto")
    assert opts["--dtype"].default == "auto" and opts["--model"].default in ("default", None)
    assert opts["--model"].multiple is (path == ("dilemmas",))


ALL = "resid_pre, resid_mid, resid_post, attn_out, mlp_out, head, pattern"


@pytest.mark.parametrize(("argv", "flag", "bad", "valid"), [
    (["capture", "--prompts", "p.jsonl", "--out", "o", "--site", "resid"], "'--site' / '-s'", "resid", ALL),
    (["patch", "--site", "pattern"], "'--site'", "pattern", "resid_pre, resid_mid, resid_post, attn_out, mlp_out, head"),
    (["ablate", "--site", "resid_pre"], "'--site'", "resid_pre", "head, attn_out, mlp_out"),
    (["directions", "--positive", "a", "--negative", "b", "--out", "c", "--layer", "1", "--component", "x"], "'--component'", "x", ALL),
])
def test_bad_component_is_one_error_line_naming_the_flag(argv: list[str], flag: str, bad: str, valid: str) -> None:
    res = runner.invoke(app, argv)
    assert res.exit_code == 2
    assert res.output.replace("\n", "") == f"error: Invalid value for {flag}: unknown component '{bad}'; valid components: {valid}"
