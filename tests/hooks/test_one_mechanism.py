"""Torch modules are hooked only inside ``alignscope.hooks``: one hook mechanism for the whole library."""

from __future__ import annotations

import ast
from pathlib import Path

import torch

import alignscope
from alignscope.hooks.handle import HookHandle

SRC = Path(alignscope.__file__).parent
REGISTER = {"register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook", "register_hook"}
ALLOWED = {
    # the loader's permanent KV-cache alias: part of loading (models sits below hooks), not an intervention
    "models/hf_compat.py",
}


def _calls(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(node.lineno, node.func.attr) for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in REGISTER]


def test_no_module_outside_hooks_registers_torch_hooks() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("hooks/") or rel in ALLOWED:
            continue
        offenders += [f"{rel}:{line} {name}" for line, name in _calls(path)]
    assert offenders == []


def test_the_scan_finds_a_registration() -> None:
    # the check above can fail: it sees the registrations that hooks/ itself makes
    assert any(name == "register_forward_hook" for _, name in _calls(SRC / "hooks" / "handle.py"))


def test_on_output_and_on_input_are_scoped() -> None:
    lin = torch.nn.Linear(2, 2)
    seen: list[str] = []
    x = torch.ones(1, 2)
    plain = lin(x)
    with HookHandle() as handle:
        handle.on_input(lin, lambda _m, _a: seen.append("in"))
        handle.on_output(lin, lambda _m, _a, out: out * 2)
        torch.testing.assert_close(lin(x), plain * 2, rtol=0, atol=0)
        assert handle.active
    assert seen == ["in"]
    torch.testing.assert_close(lin(x), plain, rtol=0, atol=0)
    assert not lin._forward_hooks and not lin._forward_pre_hooks
