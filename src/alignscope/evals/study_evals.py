"""The test-split evaluation parts of :class:`~alignscope.evals.study.StudyResults`.

``baseline``, ``after`` and ``comparisons`` (:class:`EvalSummary`, the file form of
:meth:`~alignscope.evals.behaviour.RefusalEval.to_json`), ``kl`` (:class:`KlSummary`) and
``gate`` (:class:`GateSummary`). Each part's ``to_json()`` gives its exact JSON and
``from_json(value, at)`` validates it, naming the file and field path in its errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alignscope.evals.json_fields import (
    At,
    boolean,
    field,
    integer,
    interval,
    json_object,
    mapping,
    maybe,
    number,
    obj,
    opt_interval,
    opt_number,
    opt_string,
    seq,
    string,
)

JsonRow = Mapping[str, Any]
"""A JSON object kept as it is (here: the LLM judge's summary)."""


@dataclass(frozen=True)
class GroupRate:
    """The refusal rate of one label or category: n, refusals k, rate (None when n is 0) and 95% Wilson interval."""

    n: int
    k: int
    refusal_rate: float | None
    ci95: tuple[float, float]

    def to_json(self) -> dict[str, Any]:
        """``{"n", "k", "refusal_rate", "ci95"}`` (a ``by_category`` entry)."""
        return {"n": self.n, "k": self.k, "refusal_rate": self.refusal_rate, "ci95": list(self.ci95)}

    @classmethod
    def from_json(cls, value: Any, at: At) -> GroupRate:
        """Read and validate (errors name ``at``)."""
        d = obj(value, at, ("n", "k", "refusal_rate", "ci95"))
        return cls(field(d, "n", at, integer), field(d, "k", at, integer), field(d, "refusal_rate", at, opt_number),
                   field(d, "ci95", at, interval))


@dataclass(frozen=True)
class LogitScore:
    """The mean logit refusal score of one label with its 95% interval (Nones for no prompts)."""

    mean: float | None
    ci95: tuple[float | None, float | None]
    n: int

    def to_json(self) -> dict[str, Any]:
        """``{"mean", "ci95", "n"}``."""
        return {"mean": self.mean, "ci95": list(self.ci95), "n": self.n}

    @classmethod
    def from_json(cls, value: Any, at: At) -> LogitScore:
        """Read and validate (errors name ``at``)."""
        d = obj(value, at, ("mean", "ci95", "n"))
        return cls(field(d, "mean", at, opt_number), field(d, "ci95", at, opt_interval), field(d, "n", at, integer))


_LABEL_KEYS = ("n", "k", "refusal_rate", "ci95")
_EVAL_KEYS = (*_LABEL_KEYS, "by_category", "logit_score", "seconds", "max_new_tokens", "chat", "intervention")


@dataclass(frozen=True)
class EvalSummary:
    """``baseline``, ``after`` and each of ``comparisons``: a refusal evaluation on the test split.

    The file form is :meth:`~alignscope.evals.behaviour.RefusalEval.to_json` (the ``alignscope
    eval --json`` payload): ``n``, ``k``, ``refusal_rate`` and ``ci95`` per label (here gathered
    into :attr:`by_label`), ``by_category`` (n, k, refusal_rate, ci95 per category),
    ``logit_score`` (mean, ci95, n per label), ``seconds``, the settings ``max_new_tokens``,
    ``chat`` and ``intervention`` (its kind, None for none), and ``judge`` when an LLM judge ran.
    """

    by_label: Mapping[str, GroupRate]
    by_category: Mapping[str, GroupRate]
    logit_score: Mapping[str, LogitScore]
    seconds: float
    max_new_tokens: int
    chat: bool
    intervention: str | None
    judge: JsonRow | None = None

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
        return out

    @classmethod
    def from_json(cls, value: Any, at: At) -> EvalSummary:
        """Read and validate (errors name ``at``); ``n``, ``k``, ``refusal_rate`` and ``ci95`` must list the same labels."""
        d = obj(value, at, _EVAL_KEYS, ("judge",))
        ns = field(d, "n", at, lambda v, a: mapping(v, a, integer))
        ks = field(d, "k", at, lambda v, a: mapping(v, a, integer))
        rates = field(d, "refusal_rate", at, lambda v, a: mapping(v, a, opt_number))
        cis = field(d, "ci95", at, lambda v, a: mapping(v, a, interval))
        for key, part in (("k", ks), ("refusal_rate", rates), ("ci95", cis)):
            if list(part) != list(ns):
                (at / key).fail(f"expected the labels of {(at / 'n').field} in the same order ({', '.join(ns)}), got {', '.join(part)}")
        by_label = {g: GroupRate(ns[g], ks[g], rates[g], cis[g]) for g in ns}
        return cls(by_label, field(d, "by_category", at, lambda v, a: mapping(v, a, GroupRate.from_json)),
                   field(d, "logit_score", at, lambda v, a: mapping(v, a, LogitScore.from_json)), field(d, "seconds", at, number),
                   field(d, "max_new_tokens", at, integer), field(d, "chat", at, boolean), field(d, "intervention", at, opt_string),
                   maybe(d, "judge", at, json_object))


@dataclass(frozen=True)
class KlSummary:
    """``kl``: first-token KL(unsteered || steered) on the harmless test prompts.

    n, mean, ci95 (percentile bootstrap of the mean), median, max, ci_method, and the
    per-prompt ``values`` (None where a value was not a number).
    """

    n: int
    mean: float | None
    ci95: tuple[float | None, float | None]
    median: float | None
    max: float | None
    ci_method: str
    values: tuple[float | None, ...]

    def to_json(self) -> dict[str, Any]:
        """The ``kl`` object."""
        return {"n": self.n, "mean": self.mean, "ci95": list(self.ci95), "median": self.median, "max": self.max,
                "ci_method": self.ci_method, "values": list(self.values)}

    @classmethod
    def from_json(cls, value: Any, at: At) -> KlSummary:
        """Read and validate (errors name ``at``)."""
        d = obj(value, at, ("n", "mean", "ci95", "median", "max", "ci_method", "values"))
        return cls(field(d, "n", at, integer), field(d, "mean", at, opt_number), field(d, "ci95", at, opt_interval),
                   field(d, "median", at, opt_number), field(d, "max", at, opt_number), field(d, "ci_method", at, string),
                   field(d, "values", at, lambda v, a: seq(v, a, opt_number)))


@dataclass(frozen=True)
class Proportion:
    """k of n with the rate (None when n is 0) and its 95% Wilson interval (:meth:`alignscope.stats.Rate.as_dict`)."""

    k: int
    n: int
    rate: float | None
    ci95: tuple[float, float]

    def to_json(self) -> dict[str, Any]:
        """``{"k", "n", "rate", "ci95"}``."""
        return {"k": self.k, "n": self.n, "rate": self.rate, "ci95": list(self.ci95)}

    @classmethod
    def from_json(cls, value: Any, at: At) -> Proportion:
        """Read and validate (errors name ``at``)."""
        d = obj(value, at, ("k", "n", "rate", "ci95"))
        return cls(field(d, "k", at, integer), field(d, "n", at, integer), field(d, "rate", at, opt_number), field(d, "ci95", at, interval))


@dataclass(frozen=True)
class GateGroup:
    """One label's gate rates: how often the gate fired, and how often gated and ungated prompts were refused."""

    gate: Proportion
    refused_when_gated: Proportion
    refused_when_not_gated: Proportion

    def to_json(self) -> dict[str, Any]:
        """``{"gate", "refused_when_gated", "refused_when_not_gated"}``."""
        return {"gate": self.gate.to_json(), "refused_when_gated": self.refused_when_gated.to_json(),
                "refused_when_not_gated": self.refused_when_not_gated.to_json()}

    @classmethod
    def from_json(cls, value: Any, at: At) -> GateGroup:
        """Read and validate (errors name ``at``)."""
        d = obj(value, at, ("gate", "refused_when_gated", "refused_when_not_gated"))
        return cls(*(field(d, key, at, Proportion.from_json) for key in ("gate", "refused_when_gated", "refused_when_not_gated")))


@dataclass(frozen=True)
class GateSummary:
    """``gate`` (conditional interventions only, else null): the probe threshold and :class:`GateGroup` per label (and ``lookalike``)."""

    threshold: float | None
    by_label: Mapping[str, GateGroup]

    def to_json(self) -> dict[str, Any]:
        """The ``gate`` object."""
        return {"threshold": self.threshold, "by_label": {k: g.to_json() for k, g in self.by_label.items()}}

    @classmethod
    def from_json(cls, value: Any, at: At) -> GateSummary:
        """Read and validate (errors name ``at``)."""
        d = obj(value, at, ("threshold", "by_label"))
        return cls(field(d, "threshold", at, opt_number), field(d, "by_label", at, lambda v, a: mapping(v, a, GateGroup.from_json)))
