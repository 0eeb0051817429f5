"""The ``alignscope`` command line: a thin Typer layer over the library.

Each area registers its commands from its own module, so the command modules stay small.
"""

from __future__ import annotations

import typer

from alignscope.cli import aqi, bench, circuits, compare, core, evals, generate, lenses, mac, pipeline, steering
from alignscope.cli.common import setup_logging

app = typer.Typer(
    name="alignscope",
    help="Find where alignment behaviour lives inside an open LLM, change it there, and prove the change.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # help texts contain brackets such as logit[answer]; show them verbatim
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging on stderr.")) -> None:
    setup_logging(verbose)


for _module in (core, pipeline, steering, evals, bench, generate, circuits, lenses, mac, aqi, compare):
    _module.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
