"""The docs site's gallery: real reports from the demo, copied into the site at build time.

Nothing binary is committed: the reports come from the demo's output directory
(``$ALIGNSCOPE_GALLERY``, else ``demo_out/`` at the repository root). ``make demo`` writes the
refusal study there; ``make docs`` adds a circuit diagram (``alignscope patch --graph``) and a DLA
plot on the embedded model. Each report that exists is added to the site under ``gallery/``;
the gallery page links it, and says how to produce the ones that are missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File

MARKER = "<!-- gallery -->"
ROOT = Path(__file__).resolve().parents[1]

# (path under the demo directory, title, what it shows, the command that writes it)
ITEMS: tuple[tuple[str, str, str, str], ...] = (
    ("run/report.html", "Refusal study dashboard", "candidate heatmaps, cosine and norm curves, refusal rates before and after "
     "with intervals, where the gate fired, escaped example generations", "make demo"),
    ("run/rates.png", "Refusal rates before and after", "the held-out test split, 95% Wilson intervals", "make demo"),
    ("run/candidates.png", "Direction candidates", "the selection's scores per layer and position", "make demo"),
    ("patch/circuit.html", "Circuit diagram (factual recall)", "resid_pre patching of 'The Eiffel Tower is located in the city of' "
     "vs the Colosseum, top nodes per layer and position", "make docs"),
    ("patch/resid_pre_activation_effect.png", "Patching effect map", "logit(' Paris') - logit(' Rome') recovered per layer and position",
     "make docs"),
    ("mac/report.html", "Alignment circuit dashboard", "the circuit's comparison with the base model and the other rows, loss "
     "curves, what its sensors read token by token", "alignscope mac train --out demo_out/mac"),
    ("dla/dla_layers.png", "Direct logit attribution", "each layer's attention and MLP share of logit(' Paris') - logit(' London')",
     "make docs"),
)


def demo_dir() -> Path:
    """Where the demo's reports are read from."""
    return Path(os.environ.get("ALIGNSCOPE_GALLERY") or ROOT / "demo_out")


def present() -> list[tuple[str, str, str, str]]:
    """The gallery items whose file exists."""
    return [item for item in ITEMS if (demo_dir() / item[0]).is_file()]


def add_files(files: Any, config: Any) -> Any:
    """Add every existing report to the site's files under ``gallery/``."""
    for rel, *_ in present():
        files.append(File.generated(config, f"gallery/{rel}", abs_src_path=str(demo_dir() / rel)))
    return files


def render(config: Any) -> str:
    """The gallery's markdown: a section per existing report, then the missing ones with their command."""
    have = present()
    lines: list[str] = []
    for rel, title, what, _ in have:
        lines += [f"## {title}", "", f"{what[0].upper()}{what[1:]}.", ""]
        if rel.endswith(".png"):
            lines += [f"![{title}](gallery/{rel})", ""]
        else:
            lines += [f"[Open `{rel}`](gallery/{rel}) (self-contained: opens offline).", ""]
    missing = [item for item in ITEMS if item not in have]
    if missing:
        lines += ["## Not built into this copy of the site", ""]
        lines += [f"- {title} (`{rel}`): run `{cmd}`, then `make docs`." for rel, title, _, cmd in missing]
        lines.append("")
    return "\n".join(lines)
