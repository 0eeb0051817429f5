"""The docs build's helpers in tools/, against hand-written expectations."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import cli_reference  # noqa: E402  (tools/ is not a package)
import griffe_docstrings  # noqa: E402


def test_docstring_rewrite() -> None:
    text = "Intro, see :mod:`~alignscope.evals.study` and :class:`alignscope.sites.Site`.\n\nExample:\n    >>> f(1)\n    2\n"
    assert griffe_docstrings.rewrite(text) == ("Intro, see `study` and `alignscope.sites.Site`.\n\nExamples:\n    >>> f(1)\n    2\n")
    assert griffe_docstrings.rewrite("An Example: not a heading") == "An Example: not a heading"
    assert griffe_docstrings.rewrite("    Example:\n") == "    Examples:\n"


def test_table_cell_escaping() -> None:
    assert cli_reference.cell("logit[answer] | x\n  <b>  a_b *c*") == "logit\\[answer\\] \\| x &lt;b> a\\_b \\*c\\*"
    assert cli_reference.cell("C:\\path") == "C:\\\\path"
