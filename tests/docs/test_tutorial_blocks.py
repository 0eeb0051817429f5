"""Every checked console block in the docs, executed on the embedded model: the page shows real output.

Slow (each block loads the embedded model and runs it: about a minute and a half on 2 free CPU
cores), so it runs where ``$ALIGNSCOPE_DOC_BLOCKS`` is 1, as ``make docs`` sets it before building
the site; elsewhere it skips and says so. Commands run in a temporary directory that holds a link to ``examples/``, with a wide
terminal so rich tables do not wrap.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.blocks import Block, blocks, mismatch

ROOT = Path(__file__).resolve().parents[2]
CHECKED = [b for page in sorted((ROOT / "docs").rglob("*.md")) for b in blocks(page) if b.checked]


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("ALIGNSCOPE_DOC_BLOCKS") != "1", reason="executing the docs' console blocks is slow: "
                    "`make docs` runs it (or set ALIGNSCOPE_DOC_BLOCKS=1)")
@pytest.mark.parametrize("block", CHECKED, ids=[f"{b.path.relative_to(ROOT / 'docs')}:{b.line}" for b in CHECKED])
def test_block_output_matches_the_page(block: Block, embedded, tmp_path: Path) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    for step in block.steps():
        argv = shlex.split(step.command)
        res = subprocess.run([sys.executable, "-m", "alignscope", *argv[1:]], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=900)
        assert res.returncode == 0, f"{step.command}\n{res.stdout}\n{res.stderr}"
        problem = mismatch(step.expected, res.stdout)
        assert problem is None, f"{block.path.name}:{block.line}: {step.command}\n{problem}"
