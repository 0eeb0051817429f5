from __future__ import annotations

import errno
import math
import os
import re
from pathlib import Path
from typing import Any

import pytest

from alignscope.errors import DiskFullError
from alignscope.reports.html import Page
from alignscope.reports.plots import bars_png, heatmap_png, lines_png, rate_bars_png
from alignscope.reports.refusal_report import category_bars_png


def test_page_escapes_data_and_inlines_plotly(tmp_path: Path) -> None:
    import plotly.graph_objects as go

    page = Page("t<i>", subtitle="s&")
    page.add_heading("<script>alert(1)</script>")
    page.add_table(["a", "b<"], [["<img src=x>", 0.123456]])
    page.add_pre("</pre><b>")
    page.add_figure(go.Figure(go.Scatter(x=[1, 2], y=[3, 4], name="</script><script>x()</script>")))
    html = page.write(tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)" in html
    assert "<img src=x>" not in html and "0.1235" in html
    assert "</script><script>x()" not in html
    assert "Plotly.newPlot" in html and "plotly.js" in html.lower()
    assert "https://cdn" not in html.split("<body>")[1]


def test_pngs_are_written(tmp_path: Path) -> None:
    for p in (
        heatmap_png(tmp_path / "h.png", [[0, 1], [-1, 2]], title="h", xlabel="x", ylabel="y", xticklabels=["a", "b"]),
        lines_png(tmp_path / "l.png", {"a": [1, 2, 3]}, title="l", xlabel="x", ylabel="y", bands={"a": ([0, 1, 2], [2, 3, 4])}),
        rate_bars_png(tmp_path / "b.png", {"before": {"harmful": (0.1, 0.05, 0.2)}, "after": {"harmful": (0.8, 0.7, 0.9)}}, title="b"),
    ):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_png_on_a_full_disk_names_it_and_keeps_the_old_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PNGs go through the atomic writer: a full disk is one DiskFullError naming the PNG, and the old PNG stays."""
    path = bars_png(tmp_path / "b.png", {"a": 1.0}, title="old", ylabel="y")
    before = path.read_bytes()

    def full(_: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFullError, match=f"^{path}: could not write"):
        bars_png(path, {"a": 2.0, "b": 3.0}, title="new", ylabel="y")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["b.png"]  # no temporary left


def test_category_bars_without_categories(tmp_path: Path) -> None:
    """A test split whose prompts carry no category drew no bars and crashed (found by tests/hardening/test_secrets.py)."""
    path = category_bars_png(tmp_path / "c.png", {"before": {}, "after": {}}, title="t")
    assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG"


def test_category_bars_draw_each_rate_through_the_shared_saver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import alignscope.reports.refusal_report as refusal_report

    saved: list[Any] = []
    real = refusal_report.save_figure

    def spy(fig: Any, plt: Any, path: str | Path) -> Path:
        saved.append([(bar.get_width(), bar.get_y()) for bar in fig.axes[0].patches])
        return real(fig, plt, path)

    monkeypatch.setattr(refusal_report, "save_figure", spy)
    groups = {"before": {"crime": (0.25, 0.1, 0.4), "weapons": (0.5, 0.3, 0.7)}, "after": {"weapons": (1.0, 0.9, 1.0)}}
    path = category_bars_png(tmp_path / "c.png", groups, title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["c.png"]  # no temp file left behind
    [bars] = saved
    widths = [w for w, _ in bars]
    # first-seen category order (crime, weapons) per condition; "after" has no crime: a NaN bar, drawn as nothing
    assert widths[0:2] == [0.25, 0.5] and math.isnan(widths[2]) and widths[3] == 1.0
    height = 0.8 / 2  # bars centred on row + condition * height
    assert [y for _, y in bars] == pytest.approx([0 - height / 2, 1 - height / 2, height / 2, 1 + height / 2])


def test_page_shows_hostile_text_as_text() -> None:
    """Every data-drawn text, figure labels included: no tag survives, and bidirectional controls are shown, not applied."""
    hostile = "evil\u202etxt.exe </script><img src=x onerror=alert(1)> \u2066x\u2069"
    page = Page(hostile, subtitle=hostile)
    page.add_heading(hostile)
    page.add_text(hostile)
    page.add_pre(hostile)
    page.add_table([hostile], [[hostile]], caption=hostile)
    page.add_figure({"data": [{"type": "bar", "x": [hostile], "y": [1], "hovertext": [hostile]}], "layout": {"title": {"text": hostile}}})
    out = page.render()
    assert "\u202e" not in out and "\u2066" not in out and "\u2069" not in out
    outside_scripts = re.sub(r"<script>.*?</script>", "", out, flags=re.S)  # a script ends only at a real </script>
    assert "<img src=x" not in outside_scripts and "</script><img" not in out
    assert out.count("evil[U+202E]txt.exe") >= 8  # title, subtitle, heading, text, pre, header, cell, caption (+ the figure's)
    assert '"x": ["evil[U+202E]txt.exe <\\/script><img src=x onerror=alert(1)> [U+2066]x[U+2069]"]' in out
