"""Build the docs site the way ``make docs`` does (``mkdocs build --strict``), into a directory of the caller's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def build_site(dest: Path, gallery: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``mkdocs build --strict`` with the repository's mkdocs.yml into ``dest`` (no network is used)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "NO_MKDOCS_2_WARNING": "1", "ALIGNSCOPE_GALLERY": str(gallery or dest.parent / "no-gallery")}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(dest)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
