"""Every option of every command, fed hostile values through Typer's runner.

The commands and their options are walked from the Typer app itself, so a new option is fuzzed
without a test edit. Each command starts from a valid invocation (the secrets test's, with the
model replaced by a directory that does not exist, so nothing long can start), and one option at a
time gets a hostile value: wrong types, huge numbers, NaN, empty strings, ``../`` paths, bad site
specs. The property of :func:`tests.hardening.test_fuzz_cli.check`: exit 0 or 2, never a
traceback, and on 2 a one-line error. Values are checked up to the model load; what a command
checks after loading has its own tests (``tests/cli``, ``tests/hooks/test_numerics.py``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st

from alignscope.cli import app
from tests.hardening.test_fuzz_cli import NO_MODEL, OPTION_VALUES, check
from tests.hardening.test_secrets import commands

MODEL_OPTIONS = frozenset({"--model", "--base", "--aligned"})
MODEL_VALUES = st.sampled_from(["", "../..", "/nonexistent/x", ".", "./missing", "default/../x", "::", "\u202e/x", "/dev/null"])
"""Model options get local paths only: any other text is a hub id, which an offline machine retries for seconds."""


def _walk(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    if hasattr(cmd, "commands"):
        return [found for name, sub in cmd.commands.items() for found in _walk(sub, (*path, name))]
    return [(" ".join(path), cmd)]


COMMANDS = dict(_walk(typer.main.get_command(app)))
OPTIONS = [(name, param.opts[0]) for name, cmd in COMMANDS.items() for param in cmd.params
           if type(param).__name__.endswith("Option") and not param.is_flag and param.name != "help"]
EXTRA = {  # commands the secrets test does not run
    "edit": ["edit", "--model", NO_MODEL, "--ablate-direction", "{tmp}/steer.safetensors", "--out", "{tmp}/edited"],
    "tuned-lens eval": ["tuned-lens", "eval", "--model", NO_MODEL, "--lens", "{tmp}/tuned"],
    "mac train": ["mac", "train", "--out", "{tmp}/mac", "--model", NO_MODEL],
    "mac show": ["mac", "show", "--mac", "{tmp}/steer.safetensors", "--prompt", "hi", "--model", NO_MODEL],
    "run": ["run", "--out", "{tmp}/run", "--model", NO_MODEL],
}


def baseline(name: str, tmp: Path) -> list[str]:
    """A valid invocation of ``name`` whose model does not exist."""
    if name in EXTRA:
        return [a.format(tmp=tmp) for a in EXTRA[name]]
    args = list(commands(NO_MODEL, tmp, "http://127.0.0.1:9", tmp / "run.yaml")[name])
    for flag in ("--model", "--base"):
        if flag in args:
            args[args.index(flag) + 1] = NO_MODEL
    return args


def with_value(args: list[str], opt: str, value: str) -> list[str]:
    """``args`` with ``opt`` set to ``value`` (replaced where present, else appended before any positional end)."""
    if opt in args:
        i = args.index(opt)
        return [*args[:i + 1], value, *args[i + 2:]]
    return [*args, opt, value]


def values_per_option() -> int:
    """Hostile values tried per option: 3 by default, 100 under --hypothesis-profile=long."""
    return max(3, settings().max_examples // 10)


def test_every_command_and_option_is_covered() -> None:
    assert set(COMMANDS) == set(EXTRA) | set(commands(NO_MODEL, Path(tempfile.mkdtemp()), "", Path("x")))
    assert len(OPTIONS) > 200
    assert with_value(["a", "--x", "1", "--y", "2"], "--x", "9") == ["a", "--x", "9", "--y", "2"]
    assert with_value(["a"], "--x", "9") == ["a", "--x", "9"]


@pytest.mark.parametrize(("name", "opt"), OPTIONS, ids=[f"{n}{o}" for n, o in OPTIONS])
def test_option_survives_hostile_values(name: str, opt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a hostile relative --out ("True", "None") must not land in the checkout
    @settings(max_examples=values_per_option())
    @given(MODEL_VALUES if opt in MODEL_OPTIONS else OPTION_VALUES | st.just(""))
    def run(value: str) -> None:
        if "\x00" in value:
            return  # argv cannot hold a NUL byte
        with tempfile.TemporaryDirectory() as tmp:
            check(with_value(baseline(name, Path(tmp)), opt, value))

    run()
