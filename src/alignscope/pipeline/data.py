"""The prompts of a run, split into train (fit), val (choose) and test (report only).

A source is ``builtin:NAME`` (its fixed splits are used), or a prompt file or ``hf:NAME[:SPLIT]``
dataset, which is split deterministically by a seeded shuffle into 50/20/30%. Sizes are capped per set and split by
taking prompts round-robin over categories, so a small cap still covers every category.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

from alignscope.data.prompts import Prompt, PromptSet
from alignscope.data.sources import load_source, parse_source
from alignscope.errors import InputError

SPLITS = ("train", "val", "test")
FILE_FRACTIONS = (0.5, 0.2, 0.3)


@dataclass(frozen=True)
class RunData:
    """Prompt sets per role and split; ``lookalike`` may be empty."""

    harmful: dict[str, PromptSet]
    harmless: dict[str, PromptSet]
    lookalike: dict[str, PromptSet]

    def test_set(self) -> PromptSet:
        """Every test prompt: harmful, harmless and lookalike."""
        return self.harmful["test"] + self.harmless["test"] + self.lookalike["test"]

    def summary(self) -> dict[str, Any]:
        """Counts and content hashes per role and split."""
        return {role: {split: {"n": len(ps), "sha256": ps.content_hash()} for split, ps in sets.items()}
                for role, sets in (("harmful", self.harmful), ("harmless", self.harmless), ("lookalike", self.lookalike))}


def round_robin(prompts: PromptSet, n: int | None) -> PromptSet:
    """At most ``n`` prompts, taken in turn from each category (first-seen order); all when ``n`` is None."""
    if n is None or n >= len(prompts):
        return prompts
    groups: dict[str | None, list[Prompt]] = {}
    for p in prompts:
        groups.setdefault(p.category, []).append(p)
    picked: list[Prompt] = []
    depth = 0
    while len(picked) < n:
        for items in groups.values():
            if depth < len(items) and len(picked) < n:
                picked.append(items[depth])
        depth += 1
    return PromptSet(picked, prompts.source)


def split_source(spec: str, seed: int) -> dict[str, PromptSet]:
    """``train``/``val``/``test`` sets of one source (built-in fixed splits, or a seeded file split)."""
    source = parse_source(spec)
    if source.kind == "builtin":
        if source.split is not None:
            raise InputError(f"give the set without a split ({replace(source, split=None)}); "
                             "the run uses its fixed train/val/test splits", field="data")
        return {split: load_source(replace(source, split=split)) for split in SPLITS}
    prompts = list(load_source(source))
    random.Random(seed).shuffle(prompts)
    n_train = round(FILE_FRACTIONS[0] * len(prompts))
    n_val = round(FILE_FRACTIONS[1] * len(prompts))
    parts = (prompts[:n_train], prompts[n_train:n_train + n_val], prompts[n_train + n_val:])
    return {split: PromptSet(part, f"{spec}:{split}") for split, part in zip(SPLITS, parts, strict=True)}


def with_label(prompts: PromptSet, label: str) -> PromptSet:
    """The prompts with ``label`` filled in where absent (a file of harmful prompts needs no label column)."""
    return PromptSet((p if p.label else replace(p, label=label) for p in prompts), prompts.source)


def resolve_data(harmful: str, harmless: str, lookalike: str | None, *, caps: dict[str, int | None], seed: int) -> RunData:
    """Load and split the run's prompts, capping each split at ``caps[split]`` per set."""
    roles: dict[str, dict[str, PromptSet]] = {}
    for role, spec, label in (("harmful", harmful, "harmful"), ("harmless", harmless, "harmless"),
                              ("lookalike", lookalike, "harmless")):
        if spec is None:
            roles[role] = {split: PromptSet([], "none") for split in SPLITS}
            continue
        splits = split_source(spec, seed)
        roles[role] = {split: with_label(round_robin(ps, caps.get(split)), label) for split, ps in splits.items()}
    for role in ("harmful", "harmless"):
        for split in ("train", "test"):
            if len(roles[role][split]) == 0:
                raise InputError(f"the {split} split of the {role} prompts is empty", field=f"data.{role}")
    return RunData(roles["harmful"], roles["harmless"], roles["lookalike"])
