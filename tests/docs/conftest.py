from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.site import build_site


@pytest.fixture(scope="session")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The docs site built once per session with ``mkdocs build --strict``."""
    pytest.importorskip("mkdocs", reason="the docs extra (mkdocs) is not installed")
    dest = tmp_path_factory.mktemp("site") / "site"
    res = build_site(dest)
    assert res.returncode == 0, res.stdout + res.stderr
    return dest
