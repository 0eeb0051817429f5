"""Loader for the MoralChoice scenario CSVs (Scherrer et al. 2023) as dilemma pairs.

Each row has ``scenario_id``, ``ambiguity``, ``context``, ``action1`` and ``action2``. In the
low-ambiguity file ``action1`` is the one that follows the common-sense rule, so it becomes the
ethical option; high-ambiguity rows have no agreed answer and are only loaded when
``allow_ambiguous=True`` (then ``action1`` is treated as option 1, not as "ethical"). Nothing in
alignscope needs these files at run time; they are an optional input.

Example:
    >>> pairs = load_moralchoice("moralchoice_low_ambiguity.csv", limit=50)   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from alignscope.dilemmas.schema import TEMPLATE, DilemmaPair, build_pair
from alignscope.errors import InputError
from alignscope.tables import read_csv

REQUIRED = ("scenario_id", "context", "action1", "action2")


def load_moralchoice(path: str | Path, *, limit: int | None = None, allow_ambiguous: bool = False,
                     template: str = TEMPLATE) -> list[DilemmaPair]:
    """Read a MoralChoice CSV into :class:`DilemmaPair` objects (base: action1 first as ``A``).

    Raises:
        InputError: missing file or columns (named), an empty field (row named), or high-ambiguity
            rows without ``allow_ambiguous``.
    """
    where = Path(path)
    pairs: list[DilemmaPair] = []
    for line, row in read_csv(where, what="MoralChoice CSV", required=REQUIRED):
        if row.get("ambiguity", "low") != "low" and not allow_ambiguous:
            raise InputError("high-ambiguity scenarios have no ethical answer; pass allow_ambiguous=True",
                             path=where, line=line, field="ambiguity")
        for col in REQUIRED:
            if not (row.get(col) or "").strip():
                raise InputError("empty field", path=where, line=line, field=col)
        rule = (row.get("generation_rule") or "moralchoice").strip().lower().replace(" ", "_")
        pairs.append(build_pair(row["scenario_id"].strip(), rule, row["context"].strip(), row["action1"].strip(),
                                row["action2"].strip(), template))
        if limit is not None and len(pairs) >= limit:
            break
    if not pairs:
        raise InputError("no scenarios in the file", path=where)
    return pairs
