"""Browser fixtures: the system Chromium driven by Playwright, and a page checker.

Playwright's own browser download cannot work on these machines, so the tests launch Debian's
``chromium`` (``/usr/bin/chromium``, or ``$ALIGNSCOPE_CHROMIUM``) with flags that keep it off the
network, and a fresh profile per session. They skip, with the reason, when either is missing.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.circuits.conftest import strong_dir  # noqa: F401  (the circuits tests' tiny model with O(1) weights)
from tests.docs.conftest import built_site  # noqa: F401  (the docs site, built with mkdocs build --strict)

_EXTERNAL = re.compile(r"^(?!(file|data|blob|about):)")  # any request that leaves the local file system
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    """The system Chromium executable, or None."""
    for candidate in (os.environ.get("ALIGNSCOPE_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A persistent Chromium context on a fresh user-data dir (one per test session)."""
    exe = chromium_path()
    if exe is None:
        pytest.skip("no system Chromium: install Debian's chromium (`apt-get install chromium`; `make test` does where apt "
                    "is available) or set ALIGNSCOPE_CHROMIUM")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (extra: browser)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(str(profile), executable_path=exe, headless=True, args=CHROMIUM_ARGS,
                                                        viewport={"width": 1280, "height": 900})
        try:
            yield context
        finally:
            context.close()


@dataclass
class Opened:
    """What happened while a page was open."""

    page: Any
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)


@pytest.fixture
def open_page(browser_context: Any, tmp_path: Path) -> Iterator[Any]:
    """``open_page(path) -> Opened``: load a local file, wait for it to settle, screenshot it under tmp_path."""
    pages: list[Any] = []

    def open_(path: Path, name: str) -> Opened:
        page = browser_context.new_page()
        pages.append(page)
        got = Opened(page)
        page.on("console", lambda m: got.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: got.page_errors.append(str(e)))

        def on_dialog(dialog: Any) -> None:
            got.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("requestfailed", lambda r: got.failed_requests.append(r.url))

        def leave_site(route: Any) -> None:  # a page must not fetch anything: record and refuse it (also where a network exists)
            got.external_requests.append(route.request.url)
            route.abort()

        page.route(_EXTERNAL, leave_site)
        page.goto(path.resolve().as_uri(), wait_until="load")
        page.wait_for_timeout(300)
        page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
        return got

    yield open_
    for page in pages:
        page.close()

