"""Self-contained interactive HTML pages: plotly figures inlined, every data-drawn text escaped.

A page is a title plus a list of sections; each section holds escaped text, tables and plotly
figures. The plotly library is embedded once per page, so the file opens offline.

Example:
    >>> page = Page("My study")
    >>> page.add_text("Prompts <b>escaped</b>")
    >>> "&lt;b&gt;" in page.render()
    True
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alignscope.io import atomic_write_text

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}pre{white-space:pre-wrap;background:#f7f7f7;padding:.5rem;border-radius:4px;font-size:.85rem}
.muted{color:#666;font-size:.85rem}.fig{margin:1rem 0}
"""


BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
"""Bidirectional-formatting characters, which can make displayed text read differently from what it is."""
_BIDI = re.compile(f"[{BIDI_CONTROLS}]")


def visible(char: str) -> str:
    """The visible stand-in for a bidirectional control: ``[U+202E]``."""
    return f"[U+{ord(char):04X}]"


def escape(value: Any) -> str:
    """HTML-escape any value's text (quotes included); bidirectional controls are shown as ``[U+XXXX]``."""
    return html.escape(_BIDI.sub(lambda m: visible(m.group(0)), str(value)), quote=True)


def _shown(value: Any) -> Any:
    """``value`` with every string's bidirectional controls made visible (figure labels, hover texts)."""
    if isinstance(value, str):
        return _BIDI.sub(lambda m: visible(m.group(0)), value)
    if isinstance(value, dict):
        return {_shown(k): _shown(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_shown(v) for v in value]
    return value


class Page:
    """An HTML report page built from escaped text, tables and plotly figures."""

    def __init__(self, title: str, subtitle: str | None = None) -> None:
        self.title = title
        self.subtitle = subtitle
        self._parts: list[str] = []
        self._n_figs = 0

    def add_heading(self, text: str) -> None:
        """A section heading."""
        self._parts.append(f"<h2>{escape(text)}</h2>")

    def add_text(self, text: str, *, muted: bool = False) -> None:
        """A paragraph of escaped text."""
        cls = ' class="muted"' if muted else ""
        self._parts.append(f"<p{cls}>{escape(text)}</p>")

    def add_pre(self, text: str) -> None:
        """Preformatted escaped text (e.g. a generation)."""
        self._parts.append(f"<pre>{escape(text)}</pre>")

    def add_table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], caption: str | None = None) -> None:
        """A table; every cell is escaped. Floats are shown with 4 significant digits."""
        head = "".join(f"<th>{escape(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
        cap = f"<caption>{escape(caption)}</caption>" if caption else ""
        self._parts.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def add_image(self, path: str | Path, *, alt: str) -> None:
        """A PNG file, inlined as a data URI so the page stays one self-contained file."""
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        self._parts.append(f'<div class="fig"><img alt="{escape(alt)}" style="max-width:100%" src="data:image/png;base64,{data}"></div>')

    def add_figure(self, figure: Any) -> None:
        """A plotly figure (``plotly.graph_objects.Figure`` or its dict form)."""
        spec = figure.to_plotly_json() if hasattr(figure, "to_plotly_json") else figure
        payload = json.dumps(_shown(spec), default=_json_default).replace("</", "<\\/")
        div_id = f"fig{self._n_figs}"
        self._n_figs += 1
        self._parts.append(
            f'<div class="fig" id="{div_id}"></div><script>(function(){{var s={payload};'
            f'Plotly.newPlot("{div_id}",s.data||[],s.layout||{{}},{{responsive:true}});}})();</script>'
        )

    def render(self) -> str:
        """The full HTML document."""
        plotly_js = _plotly_js() if self._n_figs else ""
        sub = f'<p class="muted">{escape(self.subtitle)}</p>' if self.subtitle else ""
        return (
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
            f"<title>{escape(self.title)}</title><style>{_CSS}</style>"
            f"<script>{plotly_js}</script></head><body><h1>{escape(self.title)}</h1>{sub}"
            + "\n".join(self._parts) + "</body></html>"
        )

    def write(self, path: str | Path) -> Path:
        """Render and write atomically; returns the path."""
        atomic_write_text(path, self.render())
        return Path(path)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs()).replace("</script", "<\\/script")
