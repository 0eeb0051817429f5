"""Assertions on an opened report page: plotly figures drawn, links resolve, no errors, payload inert."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tests.browser.conftest import Opened

# the ids passed to Plotly.newPlot in the file's own text (the reference: what the page should draw)
_NEWPLOT = re.compile(r"""Plotly\.newPlot\(\s*["']([^"']+)["']""")
_FIGURE_STATE = """ids => ids.map(id => {
  const div = document.getElementById(id);
  if (!div) return {id, found: false};
  const svg = div.querySelector('svg.main-svg');
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  return {id, found: true, plotted: div.classList.contains('js-plotly-plot'), svg: !!svg, width: box.width,
          height: box.height, drawn: div.querySelectorAll('svg.main-svg *').length,
          traces: div.querySelectorAll('.trace, .hm, image, .point').length};
})"""
PAYLOAD = "<script>alert(1)</script>"


def assert_clean(opened: Opened) -> None:
    """No console errors, no uncaught exceptions, no dialogs, no request off the file system, nothing that failed to load."""
    assert opened.console_errors == [], opened.console_errors
    assert opened.page_errors == [], opened.page_errors
    assert opened.dialogs == [], f"a dialog opened (script executed): {opened.dialogs}"
    assert opened.external_requests == [], f"the page tried to fetch from outside: {opened.external_requests}"
    assert opened.failed_requests == [], opened.failed_requests


def assert_figures_rendered(opened: Opened, html_path: Path, minimum: int = 1) -> int:
    """Every figure the file plots has an SVG with a size and drawn content; returns how many."""
    ids = _NEWPLOT.findall(html_path.read_text(encoding="utf-8"))
    assert len(ids) >= minimum, f"{html_path.name}: expected at least {minimum} plotly figure(s), found {len(ids)}"
    states = opened.page.evaluate(_FIGURE_STATE, ids)
    for state in states:
        assert state["found"] and state["plotted"] and state["svg"], state
        assert state["width"] > 0 and state["height"] > 0 and state["drawn"] > 10 and state["traces"] > 0, state
    return len(ids)


def _ids_in(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return set(re.findall(r"""\b(?:id|name)\s*=\s*["']([^"']+)["']""", text))


def assert_links_resolve(opened: Opened, html_path: Path) -> int:
    """Every same-document anchor names an element; every relative link names an existing file (and anchor)."""
    hrefs: list[str] = opened.page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    page_ids = _ids_in(html_path)
    checked = 0
    for href in hrefs:
        parts = urlsplit(href)
        if parts.scheme in ("http", "https", "mailto", "javascript", "data"):
            continue
        target = html_path if not parts.path else (html_path.parent / unquote(parts.path)).resolve()
        if target.is_dir():
            target = target / "index.html"
        assert target.is_file(), f"{html_path.name}: link {href!r} points at a missing file {target}"
        if parts.fragment:
            ids = page_ids if target == html_path else _ids_in(target)
            assert unquote(parts.fragment) in ids, f"{html_path.name}: link {href!r}: no element with that id in {target.name}"
        checked += 1
    return checked


def assert_payload_inert(opened: Opened) -> None:
    """The script payload is on the page as text, and no script ran from it."""
    text = opened.page.evaluate("document.body.innerText")
    assert PAYLOAD in text and "</script>" in text.replace(PAYLOAD, ""), "the payload is not shown as text"
    assert opened.dialogs == [], opened.dialogs
    inline = opened.page.eval_on_selector_all("body script", "els => els.map(e => e.textContent)")
    assert not any(s.strip().startswith("alert(") for s in inline), "the payload became a script element"
