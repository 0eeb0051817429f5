"""The docs site builds with zero warnings, and its CLI reference lists every command and option."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alignscope.cli import app

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import cli_reference  # noqa: E402  (tools/ is not a package)


def _help(path: list[str]) -> str:
    res = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    return res.output


def _commands(path: list[str]) -> list[str]:
    """Subcommand names as ``--help`` lists them (the reference to compare with)."""
    text = _help(path)
    if "Commands:" not in text:
        return []
    section = text.split("Commands:", 1)[1]
    return [m.group(1) for m in re.finditer(r"^\s{2}([a-z][a-z0-9-]*)\b", section, re.MULTILINE)]


def test_strict_build_has_no_warnings(built_site: Path) -> None:
    for page in ("index.html", "quickstart.html", "concepts.html", "gallery.html", "architecture.html", "reference/cli.html",
                 "api/steering.html", "tutorials/factual-recall.html"):
        assert (built_site / page).is_file(), page
    api = (built_site / "api" / "hooks.html").read_text(encoding="utf-8")
    assert "select_target" in api and ":mod:" not in api  # docstrings rendered, Sphinx roles turned into code
    for html_file in built_site.rglob("*.html"):
        text = html_file.read_text(encoding="utf-8")
        assert "fonts.googleapis" not in text and "unpkg.com" not in text, html_file


def test_cli_reference_lists_every_command_and_option() -> None:
    text = cli_reference.render(app)
    todo: list[list[str]] = [[]]
    seen = 0
    while todo:
        path = todo.pop()
        name = " ".join(["alignscope", *path])
        assert f"`{name}`" in text, name
        section = text.split(f"`{name}`", 1)[1]
        help_text = _help(path)
        for flag in set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", help_text)) - {"--help"}:
            assert flag in section.split("\n#", 1)[0], f"{name}: {flag}"
        todo += [[*path, sub] for sub in _commands(path)]
        seen += 1
    assert seen >= 16


def test_gallery_links_demo_reports(tmp_path: Path) -> None:
    from tests.docs.site import build_site

    pytest.importorskip("mkdocs")
    demo = tmp_path / "demo"
    (demo / "patch").mkdir(parents=True)
    (demo / "patch" / "circuit.html").write_text("<html><body>circuit</body></html>", encoding="utf-8")
    res = build_site(tmp_path / "site", gallery=demo)
    assert res.returncode == 0, res.stdout + res.stderr
    page = (tmp_path / "site" / "gallery.html").read_text(encoding="utf-8")
    assert 'href="gallery/patch/circuit.html"' in page and "make demo" in page
    assert (tmp_path / "site" / "gallery" / "patch" / "circuit.html").read_text(encoding="utf-8").endswith("circuit</body></html>")
