"""A griffe extension for the docs site: reads alignscope's docstrings the way they are written.

The docstrings use Google style with an ``Example:`` heading over doctest lines and Sphinx roles
(``:mod:`~alignscope.x```). Griffe's Google parser treats ``Example:`` as an admonition (the
``>>>`` lines would render as nested quotes) and shows roles verbatim, so before parsing this
renames the heading to ``Examples:`` (rendered as code) and turns each role into a code span.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^([ \t]*)Example:[ \t]*$", re.MULTILINE)
_ROLE = re.compile(r":(?:mod|class|meth|func|attr|data|obj|exc):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    target = match.group(2)
    return f"`{target.rsplit('.', 1)[-1]}`" if match.group(1) else f"`{target}`"


def rewrite(text: str) -> str:
    """The docstring text with ``Example:`` headings as ``Examples:`` and Sphinx roles as code spans."""
    return _ROLE.sub(_role, _EXAMPLE.sub(r"\1Examples:", text))


class AlignscopeDocstrings(griffe.Extension):
    """Rewrites every object's docstring with :func:`rewrite` as griffe loads it."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
