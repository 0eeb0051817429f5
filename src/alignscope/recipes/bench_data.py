"""What ``alignscope bench`` measures on: the suites' names and their items, loaded once and shared by every model.

Defaults are the in-house sets shipped with alignscope: the built-in harmful, harmless and lookalike
prompts (``test`` split) for ``refusal`` and for the first-token KL; the honest-QA multiple choice
(``test`` split) for ``truthfulqa``; ``facts.jsonl`` for ``factual``; ``bbq_mini.jsonl`` and
``crows_mini.csv`` for ``bias``; ``toxicity_prompts.jsonl`` for ``toxicity``; the lens held-out text
for ``perplexity``. Each can be replaced by a public file (:class:`BenchFiles`).

Example:
    >>> data = load_bench_data(parse_suites("refusal,bias"))   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from alignscope.data.bias import BBQItem, CrowsPair, load_bbq, read_crows
from alignscope.data.builtin_sets import load_builtin
from alignscope.data.facts import Fact, load_facts, read_known_facts
from alignscope.data.prompts import PromptSet
from alignscope.data.toxic_prompts import load_toxic_prompts
from alignscope.data.training import MCItem, load_honest_mc, read_mc_task
from alignscope.errors import InputError
from alignscope.lenses.corpus import documents, load_corpus_text

SUITES: tuple[str, ...] = ("refusal", "truthfulqa", "factual", "bias", "toxicity", "perplexity")
REFUSAL_SETS: tuple[str, ...] = ("harmful", "harmless", "lookalike")


def parse_suites(text: str) -> tuple[str, ...]:
    """Suite names from ``"a,b"`` (order kept, duplicates dropped).

    Raises:
        InputError: an empty list or an unknown name (the message lists the valid ones).
    """
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise InputError(f"no suite given; valid suites: {', '.join(SUITES)}", field="suite")
    for name in names:
        if name not in SUITES:
            raise InputError(f"unknown suite {name!r}; valid suites: {', '.join(SUITES)}", field="suite")
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class BenchFiles:
    """Public files that replace the in-house defaults (None/empty: the default).

    Attributes:
        truthfulqa: TruthfulQA's ``mc_task.json``.
        facts: a facts JSONL file (:func:`~alignscope.data.facts.load_facts`).
        known: ROME's ``known_1000.json`` (used instead of ``facts`` when given).
        bbq: BBQ JSONL files.
        crows: CrowS-Pairs CSV.
        toxicity: a prompt file of prompts that invite toxic text.
        limit: at most this many items from each public file (None: all).
    """

    truthfulqa: Path | None = None
    facts: Path | None = None
    known: Path | None = None
    bbq: tuple[Path, ...] = ()
    crows: Path | None = None
    toxicity: Path | None = None
    limit: int | None = None


@dataclass(frozen=True)
class BenchData:
    """The items of every requested suite (empty for suites not requested) and where each came from."""

    suites: tuple[str, ...]
    refusal: dict[str, PromptSet] = field(default_factory=dict)
    mc_items: tuple[MCItem, ...] = ()
    facts: tuple[Fact, ...] = ()
    bbq: tuple[BBQItem, ...] = ()
    crows: tuple[CrowsPair, ...] = ()
    toxic: PromptSet | None = None
    heldout: tuple[str, ...] = ()
    kl_prompts: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)


def load_bench_data(suites: Sequence[str], files: BenchFiles = BenchFiles()) -> BenchData:
    """Load the items of ``suites`` (see the module docstring for the defaults).

    Raises:
        InputError: a file that cannot be read, or a suite name not in :data:`SUITES`.
    """
    for name in suites:
        if name not in SUITES:
            raise InputError(f"unknown suite {name!r}; valid suites: {', '.join(SUITES)}", field="suite")
    cut = files.limit
    src: dict[str, str] = {}
    refusal: dict[str, PromptSet] = {}
    kl: tuple[str, ...] = ()
    if "refusal" in suites:
        refusal = {name: load_builtin(name, split="test") for name in REFUSAL_SETS}
        src["refusal"] = "builtin:harmful/harmless/lookalike:test"
    mc: list[MCItem] = []
    if "truthfulqa" in suites:
        mc = read_mc_task(files.truthfulqa) if files.truthfulqa else load_honest_mc("test")
        mc = mc[:cut] if files.truthfulqa and cut else mc
        src["truthfulqa"] = str(files.truthfulqa) if files.truthfulqa else "builtin:honest:test"
    facts: list[Fact] = []
    if "factual" in suites:
        if files.known:
            facts, src["factual"] = read_known_facts(files.known, limit=cut), str(files.known)
        else:
            facts = load_facts(files.facts)
            src["factual"] = str(files.facts) if files.facts else "builtin:facts"
    bbq: list[BBQItem] = []
    crows: list[CrowsPair] = []
    if "bias" in suites:
        bbq = load_bbq(files.bbq, limit=cut if files.bbq else None)
        crows = read_crows(files.crows, limit=cut if files.crows else None)
        src["bbq"] = ", ".join(map(str, files.bbq)) or "builtin:bbq_mini"
        src["crows"] = str(files.crows) if files.crows else "builtin:crows_mini"
    toxic = None
    if "toxicity" in suites:
        toxic = load_toxic_prompts(files.toxicity)
        src["toxicity"] = str(files.toxicity) if files.toxicity else "builtin:toxicity_prompts"
    heldout: list[str] = []
    if "perplexity" in suites:
        heldout = documents(load_corpus_text(None, heldout=True))
        kl = tuple(load_builtin("harmless", split="test").texts)
        src["perplexity"] = "builtin:lens_heldout; first-token KL on builtin:harmless:test"
    return BenchData(tuple(suites), refusal, tuple(mc), tuple(facts), tuple(bbq), tuple(crows), toxic, tuple(heldout), kl, src)
