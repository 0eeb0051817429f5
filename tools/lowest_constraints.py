"""Print pip constraints pinning every runtime dependency of a pyproject.toml at its lowest admitted version.

``make test-lowest`` installs with these, so the lower end of each range in pyproject.toml is one
that the suite has run on. The dev tools (ruff, mypy, pytest) are not pinned low: they check our
code, not what users install beside it. A requirement with ``==X`` or ``>=X`` gives ``name==X``; one with no
lower bound is left free (pip takes the newest) and named on stderr.

Usage: python tools/lowest_constraints.py pyproject.toml > lowest.txt
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")
_LOWER = re.compile(r"(?:==|>=|~=)\s*([0-9][A-Za-z0-9.]*)")


def lowest(requirement: str) -> tuple[str, str | None]:
    """``(name, lowest admitted version or None)`` of one PEP 508 requirement string."""
    spec = requirement.split(";", 1)[0]
    match = _REQ.match(spec)
    if match is None:
        raise SystemExit(f"pyproject.toml: cannot parse requirement {requirement!r}")
    found = _LOWER.search(match.group(3))
    return match.group(1), found.group(1) if found else None


def main(path: str) -> int:
    project = tomllib.loads(Path(path).read_text(encoding="utf-8"))["project"]
    for requirement in project.get("dependencies", []):
        name, version = lowest(requirement)
        if version is None:
            sys.stderr.write(f"{name}: no lower bound in {path}; left to the resolver\n")
        else:
            sys.stdout.write(f"{name}=={version}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml"))
