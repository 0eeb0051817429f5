"""The test-split evaluation parts of :class:`~alignscope.evals.study.StudyResults`.

``baseline``, ``after`` and ``comparisons`` (:class:`EvalSummary`, the file form of
:meth:`~alignscope.evals.behaviour.RefusalEval.to_json`), ``kl`` (:class:`KlSummary`) and
``gate`` (:class:`GateSummary`). Each part's ``to_json()`` gives its exact JSON;
:func:`alignscope.evals.json_types.parse` validates one (pydantic, strict field types), naming the
file and field path in its errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic_core import PydanticCustomError

from alignscope.evals.json_types import Bool, FileObject, Int, Interval, JsonRow, Number, OptInterval, Str


@dataclass(frozen=True)
class GroupRate(FileObject):
    """The refusal rate of one label or category: n, refusals k, rate (None when n is 0) and 95% Wilson interval."""

    n: Int
    k: Int
    refusal_rate: Number | None
    ci95: Interval

    def to_json(self) -> dict[str, Any]:
        """``{"n", "k", "refusal_rate", "ci95"}`` (a ``by_category`` entry)."""
        return {"n": self.n, "k": self.k, "refusal_rate": self.refusal_rate, "ci95": list(self.ci95)}


@dataclass(frozen=True)
class LogitScore(FileObject):
    """The mean logit refusal score of one label with its 95% interval (Nones for no prompts)."""

    mean: Number | None
    ci95: OptInterval
    n: Int

    def to_json(self) -> dict[str, Any]:
        """``{"mean", "ci95", "n"}``."""
        return {"mean": self.mean, "ci95": list(self.ci95), "n": self.n}


@dataclass(frozen=True)
class _EvalFile(FileObject):
    """:class:`EvalSummary` as written: the per-label parts are four mappings keyed by label."""

    n: Mapping[str, Int]
    k: Mapping[str, Int]
    refusal_rate: Mapping[str, Number | None]
    ci95: Mapping[str, Interval]
    by_category: Mapping[str, GroupRate]
    logit_score: Mapping[str, LogitScore]
    seconds: Number
    max_new_tokens: Int
    chat: Bool
    intervention: Str | None
    judge: JsonRow | None = None
    by_style: Mapping[str, GroupRate] | None = None


@dataclass(frozen=True)
class EvalSummary(FileObject):
    """``baseline``, ``after`` and each of ``comparisons``: a refusal evaluation on the test split.

    The file form is :meth:`~alignscope.evals.behaviour.RefusalEval.to_json` (the ``alignscope
    eval --json`` payload): ``n``, ``k``, ``refusal_rate`` and ``ci95`` per label (here gathered
    into :attr:`by_label`), ``by_category`` (n, k, refusal_rate, ci95 per category),
    ``logit_score`` (mean, ci95, n per label), ``seconds``, the settings ``max_new_tokens``,
    ``chat`` and ``intervention`` (its kind, None for none), ``judge`` when an LLM judge ran, and
    ``by_style`` (n, k, refusal_rate, ci95 per ``label/style``) when prompts carry a style.
    """

    by_label: Mapping[str, GroupRate]
    by_category: Mapping[str, GroupRate]
    logit_score: Mapping[str, LogitScore]
    seconds: float
    max_new_tokens: int
    chat: bool
    intervention: str | None
    judge: JsonRow | None = None
    by_style: Mapping[str, GroupRate] = field(default_factory=dict)

    _file_form: ClassVar[type] = _EvalFile

    @classmethod
    def _from_file(cls, f: _EvalFile) -> EvalSummary:
        """Gather the per-label mappings (``k``, ``refusal_rate`` and ``ci95`` must list ``n``'s labels in its order)."""
        labels = list(f.n)
        for key in ("k", "refusal_rate", "ci95"):
            got = list(getattr(f, key))
            if got != labels:
                raise PydanticCustomError("label_order", "labels differ from n's",
                                          {"key": key, "sibling": "n", "labels": ", ".join(labels), "got": ", ".join(got)})
        by_label = {g: GroupRate(f.n[g], f.k[g], f.refusal_rate[g], f.ci95[g]) for g in labels}
        return cls(by_label, f.by_category, f.logit_score, f.seconds, f.max_new_tokens, f.chat, f.intervention, f.judge,
                   f.by_style or {})

    def to_json(self) -> dict[str, Any]:
        """The payload, keys in :meth:`RefusalEval.to_json` order (``judge`` only when set)."""
        out: dict[str, Any] = {
            "n": {g: r.n for g, r in self.by_label.items()},
            "k": {g: r.k for g, r in self.by_label.items()},
            "refusal_rate": {g: r.refusal_rate for g, r in self.by_label.items()},
            "ci95": {g: list(r.ci95) for g, r in self.by_label.items()},
            "by_category": {c: r.to_json() for c, r in self.by_category.items()},
            "logit_score": {g: s.to_json() for g, s in self.logit_score.items()},
            "seconds": self.seconds, "max_new_tokens": self.max_new_tokens, "chat": self.chat, "intervention": self.intervention,
        }
        if self.judge is not None:
            out["judge"] = self.judge
        if self.by_style:
            out["by_style"] = {c: r.to_json() for c, r in self.by_style.items()}
        return out


@dataclass(frozen=True)
class KlSummary(FileObject):
    """``kl``: first-token KL(unsteered || steered) on the harmless test prompts.

    n, mean, ci95 (percentile bootstrap of the mean), median, max, ci_method, and the
    per-prompt ``values`` (None where a value was not a number).
    """

    n: Int
    mean: Number | None
    ci95: OptInterval
    median: Number | None
    max: Number | None
    ci_method: Str
    values: tuple[Number | None, ...]

    def to_json(self) -> dict[str, Any]:
        """The ``kl`` object."""
        return {"n": self.n, "mean": self.mean, "ci95": list(self.ci95), "median": self.median, "max": self.max,
                "ci_method": self.ci_method, "values": list(self.values)}


@dataclass(frozen=True)
class Proportion(FileObject):
    """k of n with the rate (None when n is 0) and its 95% Wilson interval (:meth:`alignscope.stats.Rate.as_dict`)."""

    k: Int
    n: Int
    rate: Number | None
    ci95: Interval

    def to_json(self) -> dict[str, Any]:
        """``{"k", "n", "rate", "ci95"}``."""
        return {"k": self.k, "n": self.n, "rate": self.rate, "ci95": list(self.ci95)}


@dataclass(frozen=True)
class GateGroup(FileObject):
    """One label's gate rates: how often the gate fired, and how often gated and ungated prompts were refused."""

    gate: Proportion
    refused_when_gated: Proportion
    refused_when_not_gated: Proportion

    def to_json(self) -> dict[str, Any]:
        """``{"gate", "refused_when_gated", "refused_when_not_gated"}``."""
        return {"gate": self.gate.to_json(), "refused_when_gated": self.refused_when_gated.to_json(),
                "refused_when_not_gated": self.refused_when_not_gated.to_json()}


@dataclass(frozen=True)
class GateSummary(FileObject):
    """``gate`` (conditional interventions only, else null): the probe threshold and :class:`GateGroup` per label (and ``lookalike``)."""

    threshold: Number | None
    by_label: Mapping[str, GateGroup]

    def to_json(self) -> dict[str, Any]:
        """The ``gate`` object."""
        return {"threshold": self.threshold, "by_label": {k: g.to_json() for k, g in self.by_label.items()}}
