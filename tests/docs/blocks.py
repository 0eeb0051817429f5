"""Checked code blocks in the docs: find them, and match a command's real output against the page.

A ```` ```console ```` block preceded by the line ``<!-- docs-test -->`` is checked: each line
starting with ``$ alignscope`` is a command (a trailing backslash continues it); the lines after a
command, up to the next command, are its expected stdout. Whitespace runs compare as one space.
Elisions: a line that is exactly ``...`` stands for any number of lines, and ``...`` inside a line
for any text on that line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MARKER = "<!-- docs-test -->"
_FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass(frozen=True)
class Step:
    """One command of a checked block and the output the page shows for it."""

    command: str
    expected: tuple[str, ...]


@dataclass(frozen=True)
class Block:
    """A fenced block: where it is, its language, whether it is marked as checked, and its lines."""

    path: Path
    line: int
    lang: str
    checked: bool
    lines: tuple[str, ...]

    def steps(self) -> list[Step]:
        """The block's commands with their expected output."""
        steps: list[Step] = []
        command: str | None = None
        expected: list[str] = []
        pending = ""
        for text in self.lines:
            if pending or text.startswith("$ "):
                part = text[2:] if not pending else text.strip()
                pending += part.rstrip("\\").rstrip() + " " if part.endswith("\\") else part
                if part.endswith("\\"):
                    continue
                if command is not None:
                    steps.append(Step(command, tuple(expected)))
                command, expected, pending = pending.strip(), [], ""
            elif command is not None:
                expected.append(text)
        if command is not None:
            steps.append(Step(command, tuple(expected)))
        return steps


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        checked = start > 0 and lines[start - 1].strip() == MARKER
        found.append(Block(path, start + 1, m.group(1), checked, tuple(lines[start + 1:j])))
        i = j + 1
    return found


def _norm(line: str) -> str:
    return " ".join(line.split())


def output_pattern(expected: list[str] | tuple[str, ...]) -> re.Pattern[str]:
    """A regex that matches the normalised output lines (each followed by a newline) the page shows."""
    parts: list[str] = []
    for line in expected:
        norm = _norm(line)
        if norm == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append("[^\n]*".join(re.escape(piece) for piece in norm.split("...")) + r"\n")
    return re.compile("".join(parts))


def mismatch(expected: list[str] | tuple[str, ...], actual: str) -> str | None:
    """None when the actual output matches the shown lines; else a message showing both."""
    lines = [_norm(line) for line in actual.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    shown = list(expected)
    while shown and not shown[-1].strip():
        shown.pop()
    text = "".join(line + "\n" for line in lines)
    if output_pattern(shown).fullmatch(text):
        return None
    return "the page shows:\n" + "\n".join(shown) + "\n\nthe command printed:\n" + "\n".join(lines)
