"""Two groups of texts, *chosen* and *rejected*, for base-vs-aligned deltas: the ``--data`` grammar of ``alignscope deltas``.

Accepted specs:

* ``hh:PATH`` or a plain ``PATH`` (``.jsonl`` / ``.jsonl.gz``): HH-RLHF comparisons read by
  :func:`alignscope.data.public.load_hh_rlhf` (the same reader the HH training loader uses);
  the groups are the full ``chosen`` and ``rejected`` transcripts, in file order.
* ``builtin:NAME[:SPLIT]``: two built-in prompt sets, see :data:`BUILTIN_GROUPS`
  (``harm``: chosen = the ``harmless`` prompts, rejected = the ``harmful`` prompts).

Example:
    >>> groups = load_text_groups("builtin:harm:test", limit=3)
    >>> len(groups.chosen), len(groups.rejected)
    (3, 3)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alignscope.data.builtin_sets import SPLITS, load_builtin
from alignscope.data.public import load_hh_rlhf
from alignscope.data.sources import split_spec
from alignscope.errors import InputError
from alignscope.io import sha256_json

GRAMMAR = "hh:PATH, an HH-RLHF .jsonl/.jsonl.gz path, or builtin:NAME[:SPLIT]"
BUILTIN_GROUPS: dict[str, tuple[str, str]] = {"harm": ("harmless", "harmful")}
"""Built-in group sets: name -> (built-in prompt set of the chosen group, of the rejected group)."""


@dataclass(frozen=True)
class TextGroups:
    """The chosen and rejected texts and where they came from."""

    chosen: tuple[str, ...]
    rejected: tuple[str, ...]
    source: str

    @property
    def sha256(self) -> str:
        """Hash of both groups (order kept)."""
        return sha256_json({"chosen": list(self.chosen), "rejected": list(self.rejected)})

    def to_json(self) -> dict[str, object]:
        """``{source, n_chosen, n_rejected, sha256}``."""
        return {"source": self.source, "n_chosen": len(self.chosen), "n_rejected": len(self.rejected), "sha256": self.sha256}


def load_text_groups(spec: str | Path, *, limit: int | None = None) -> TextGroups:
    """Load the two groups named by ``spec`` (see the module docstring), each cut to ``limit`` texts.

    Raises:
        InputError: an unknown built-in group set or split (the valid ones listed), a bad HH-RLHF
            file (file and line named), or an empty group.
    """
    text = str(spec)
    parts = split_spec(text, what="text groups", grammar=GRAMMAR, field="data", file_kinds=("hh",))
    if parts is not None and parts[0] == "hf":
        raise InputError(f"text groups {text!r}: hf: datasets are not supported here; expected {GRAMMAR}", field="data")
    if parts is not None and parts[0] == "builtin":
        chosen, rejected = _builtin(text, parts[1], parts[2])
    else:
        path = parts[1] if parts is not None else text
        pairs = load_hh_rlhf(path, limit=limit)
        chosen, rejected = [p.chosen_text for p in pairs], [p.rejected_text for p in pairs]
    groups = TextGroups(tuple(chosen[:limit]), tuple(rejected[:limit]), text)
    if not groups.chosen or not groups.rejected:
        raise InputError(f"text groups {text!r}: a group is empty ({len(groups.chosen)} chosen, {len(groups.rejected)} rejected)",
                         field="data")
    return groups


def _builtin(text: str, name: str, split: str | None) -> tuple[list[str], list[str]]:
    if name not in BUILTIN_GROUPS:
        raise InputError(f"text groups {text!r}: unknown built-in group set {name!r}; valid names: {', '.join(BUILTIN_GROUPS)}",
                         field="data")
    if split is not None and split not in SPLITS:
        raise InputError(f"text groups {text!r}: unknown split {split!r}; valid splits: {', '.join(SPLITS)}", field="data")
    first, second = BUILTIN_GROUPS[name]
    return ([p.prompt for p in load_builtin(first, split=split)], [p.prompt for p in load_builtin(second, split=split)])
