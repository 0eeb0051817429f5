"""mkdocs hooks for the docs site (``hooks:`` in mkdocs.yml).

* The CLI reference page (``reference/cli.md``) is generated from the Typer app at build time:
  its ``<!-- cli-reference -->`` marker is replaced by :func:`cli_reference.render`.
* The gallery copies real reports from the demo's output directory (``$ALIGNSCOPE_GALLERY``,
  else ``demo_out``) into the site when they exist; see :mod:`gallery`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cli_reference
import gallery


def on_files(files: Any, config: Any) -> Any:
    return gallery.add_files(files, config)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri == "reference/cli.md":
        from alignscope.cli import app

        return markdown.replace(cli_reference.MARKER, cli_reference.render(app))
    if page.file.src_uri == "gallery.md":
        return markdown.replace(gallery.MARKER, gallery.render(config))
    return markdown
