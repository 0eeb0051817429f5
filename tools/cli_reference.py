"""The CLI reference page, generated from the Typer app (run by the docs site's hook at build time).

Walks the command tree that Typer builds from ``alignscope.cli.app`` (click's interface: a group's
``list_commands``/``get_command``, each parameter's ``get_help_record``, the same records
``--help`` prints), so a command added to the app appears in the reference with no edit to the
docs. Each command gets a heading, its help text, its usage line and a table of its options.
"""

from __future__ import annotations

from typing import Any

import typer.main

MARKER = "<!-- cli-reference -->"


def cell(text: str) -> str:
    """Text as literal markdown on one line (a table cell or a paragraph): pipes, ``<``, brackets, emphasis marks escaped."""
    out = " ".join(text.split())
    for raw, safe in (("\\", "\\\\"), ("|", "\\|"), ("<", "&lt;"), ("[", "\\["), ("]", "\\]"), ("*", "\\*"), ("_", "\\_")):
        out = out.replace(raw, safe)
    return out


def command_sections(cmd: Any, ctx: Any, path: str, level: int = 2) -> list[str]:
    """Markdown for one command and, for a group, each of its subcommands in the group's order."""
    out = [f"{'#' * level} `{path}`", ""]
    if cmd.help:
        for paragraph in cmd.help.strip().split("\n\n"):
            out += [cell(paragraph), ""]
    out += ["```text", cmd.get_usage(ctx).removeprefix("Usage: ").strip(), "```", ""]
    records = [(p, p.get_help_record(ctx)) for p in cmd.params]
    rows = [(p, rec) for p, rec in records if rec is not None]
    if rows:
        out += ["| option | help |", "| --- | --- |"]
        out += [f"| `{rec[0]}` | {cell(rec[1])} |" for _, rec in rows]
        out.append("")
    if hasattr(cmd, "list_commands"):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                sub_ctx = sub.context_class(sub, info_name=name, parent=ctx)
                out += command_sections(sub, sub_ctx, f"{path} {name}", min(level + 1, 4))
    return out


def render(app: typer.Typer, prog: str = "alignscope") -> str:
    """The whole reference: the root command and its options, then every command."""
    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name=prog)
    return "\n".join(command_sections(root, ctx, prog)).rstrip() + "\n"
