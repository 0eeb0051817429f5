"""Commands fed hostile config and registry files and hostile option values, through Typer's runner.

The property: the command exits 0 or 2; on 2, stderr holds exactly one ``error:`` line and never a
traceback. Models point at a directory that does not exist, so a config that happens to be valid
stops cleanly at the model load instead of starting a long run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from alignscope.cli import app
from tests.hardening.strategies import SCALARS, yaml_files

runner = CliRunner()
NO_MODEL = "/nonexistent/alignscope-model"


def check(args: list[str]) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code in (0, 2), f"exit {res.exit_code}: {res.output[-2000:]!r}"
    assert "Traceback" not in res.output, res.output[-2000:]
    if res.exit_code == 2:
        errors = [line for line in res.stderr.splitlines() if line.startswith(("error:", "Error", "Usage:"))]
        assert errors, res.stderr[-2000:]


FILE_COMMANDS = {
    "run": (["run", "{file}", "--out", "{out}", "--model", NO_MODEL], ["model", "data", "extract", "select", "intervene", "evaluate",
                                                                        "seed", "study", "pairs", "patching", "ablation"]),
    "mac train": (["mac", "train", "{file}", "--out", "{out}", "--model", NO_MODEL], ["model", "data", "train", "lora", "qlora",
                                                                                       "variants", "compare"]),
    "compare": (["compare", "{file}", "--out", "{out}", "--metrics", "deltas"], ["models", "id", "path", "tiny", "dtype", "partner",
                                                                                  "intervention", "load_in_4bit", "device_map"]),
}


FILES_PER_COMMAND = 15
"""Hostile config/registry files fed to each command of :data:`FILE_COMMANDS`."""


@pytest.mark.parametrize("name", sorted(FILE_COMMANDS))
def test_commands_survive_hostile_files(name: str) -> None:
    template, fields = FILE_COMMANDS[name]

    @settings(max_examples=FILES_PER_COMMAND)
    @given(yaml_files(fields))
    def run(data: bytes) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / "input.yaml"
            file.write_bytes(data)
            check([a.format(file=file, out=Path(tmp) / "out") for a in template])

    run()


OPTION_VALUES = st.one_of(SCALARS.map(str), st.sampled_from(["-1", "0", "1e400", "nan", "inf", "99999999999999999999", "", "../..",
                                                              "resid_post@-3", "head@L999.H0", "builtin:nope", "hf:", "a,,b"]))


@pytest.mark.parametrize(("args", "slot"), [
    (["aqi", "--model", NO_MODEL, "--data", "{v}", "--out", "{out}"], "data"),
    (["aqi", "--model", NO_MODEL, "--layer", "{v}", "--out", "{out}"], "layer"),
    (["bench", "--model", NO_MODEL, "--suite", "{v}", "--out", "{out}"], "suite"),
    (["compare", "{reg}", "--out", "{out}", "--metrics", "{v}"], "metrics"),
    (["compare", "{reg}", "--out", "{out}", "--executor", "{v}"], "executor"),
    (["deltas", "--base", NO_MODEL, "--data", "{v}", "--out", "{out}"], "data"),
    (["eval", "--model", NO_MODEL, "--prompts", "{v}", "--out", "{out}"], "prompts"),
    (["patch", "--model", NO_MODEL, "--clean", "a", "--corrupt", "b", "--answer", "x", "--foil", "y", "--site", "{v}"], "site"),
    (["generate", "--model", NO_MODEL, "--prompt", "hi", "--max-new-tokens", "{v}"], "max-new-tokens"),
    (["run", "--study", "{v}", "--out", "{out}", "--model", NO_MODEL], "study"),
])
def test_options_survive_hostile_values(args: list[str], slot: str, tmp_path: Path) -> None:
    reg = tmp_path / "models.yaml"
    reg.write_text(f"models:\n  m:\n    path: {tmp_path}\n", encoding="utf-8")

    @settings(max_examples=10)
    @given(OPTION_VALUES)
    def run(value: str) -> None:
        if "\x00" in value:
            return  # argv cannot hold a NUL byte
        check([a.format(v=value, out=tmp_path / "out", reg=reg) for a in args])

    run()
