"""The checked-block reader and output matcher, against hand-written cases; every console block is checked."""

from __future__ import annotations

from pathlib import Path

from tests.docs.blocks import MARKER, Step, blocks, mismatch

DOCS = Path(__file__).resolve().parents[2] / "docs"

PAGE = f"""# A page

```bash
alignscope run --out x
```

{MARKER}
```console
$ alignscope info \\
    --model default --json
{{"model": "m", "load_seconds": ...}}
$ alignscope dla --prompt p
a  table   row
...
last line
```

```console
$ alignscope models
not checked
```
"""


def test_blocks_and_steps_are_read(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text(PAGE, encoding="utf-8")
    found = blocks(page)
    assert [(b.lang, b.checked, b.line) for b in found] == [("bash", False, 3), ("console", True, 8), ("console", False, 18)]
    assert found[1].steps() == [Step("alignscope info --model default --json", ('{"model": "m", "load_seconds": ...}',)),
                                Step("alignscope dla --prompt p", ("a  table   row", "...", "last line"))]


def test_matching_with_elisions() -> None:
    shown = ['{"model": "m", "load_seconds": ...}']
    assert mismatch(shown, '{"model": "m", "load_seconds": 0.81}\n') is None
    assert mismatch(shown, '{"model": "n", "load_seconds": 0.81}\n') is not None
    lines = ("a  table   row", "...", "last line")
    assert mismatch(lines, "a table row\nlast line\n") is None                     # ... may be empty
    assert mismatch(lines, "a table row\nx\ny\nlast line\n\n") is None            # or many lines; trailing blanks ignored
    assert mismatch(lines, "a table row\nx\nlast line\nextra\n") is not None     # nothing after the last shown line
    assert mismatch(lines, "extra\na table row\nlast line\n") is not None        # nor before the first
    assert mismatch(("x",), "y\n") == "the page shows:\nx\n\nthe command printed:\ny"
    assert mismatch(("a.b",), "axb\n") is not None                                 # text is literal, not a regex


def test_every_console_block_in_the_docs_is_checked() -> None:
    """A console block shows output, so it must be executed by the docs tests (marked); commands alone go in bash blocks."""
    pages = sorted(DOCS.rglob("*.md"))
    unchecked = [f"{b.path.relative_to(DOCS)}:{b.line}" for p in pages for b in blocks(p) if b.lang == "console" and not b.checked]
    assert unchecked == []
    checked = [b for p in pages for b in blocks(p) if b.checked]
    assert len(checked) >= 5 and all(b.lang == "console" and b.steps() for b in checked)
    assert all(s.command.startswith("alignscope ") for b in checked for s in b.steps())
