"""The refusal study's results (``results.json``) as typed, frozen objects.

:class:`StudyResults` is what the run assembles from its stages, what the report draws and
what ``results.json`` holds: ``to_json()`` gives the file's exact content (key order included)
and :meth:`StudyResults.from_json` reads it back, raising :class:`~alignscope.errors.InputError`
that names the file and the field path (``results.json, field 'after.n': expected an object``)
for a malformed one, so a report can be rebuilt from a finished run without the model
(:meth:`StudyResults.read`).

Values are kept as strict JSON: a statistic that is not a number (a rate over no prompts) is
None, as in the file, so an object and its reloaded copy are equal and draw the same report.

Validation is pydantic's: every part is a frozen dataclass whose fields carry the strict JSON
types of :mod:`~alignscope.evals.json_types` (an integer field rejects ``"3"``, ``3.5`` and
``true``; a number keeps an int an int), and :func:`~alignscope.evals.json_types.parse` reads any
part (the pipeline reads the stage outputs with it).

Why ``evals``: the module (with :mod:`~alignscope.evals.study_evals` and
:mod:`~alignscope.evals.json_types`) imports only ``errors``, ``tables`` and pydantic, so any layer below
``reports`` could hold it; it sits in ``evals`` because what it types is that layer's output
(:meth:`~alignscope.evals.behaviour.RefusalEval.to_json` payloads, the first-token KL summary)
beside the steering selection's, and ``evals`` is the lowest layer that may import both
``evals`` and ``steering``. The pipeline (which assembles it) and the reports (which read it)
are both above.

Nested payloads that a library type already defines and the report only shows as rows
(candidate rows of :class:`~alignscope.steering.selection.Selection`, the intervention search
tables, the run config, the judge summary) stay JSON mappings; everything the report reads is a
typed attribute.

Example:
    >>> results = StudyResults.read("out/run/results.json")   # doctest: +SKIP
    >>> results.after.by_label["harmful"].refusal_rate        # doctest: +SKIP
    0.85
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from alignscope.evals.json_types import Bool, FileObject, Int, JsonRow, Number, Str, parse
from alignscope.evals.study_evals import EvalSummary, GateSummary, KlSummary
from alignscope.tables import read_json


@dataclass(frozen=True)
class ModelInfo(FileObject):
    """``model``: which model the study ran on (``sha256``: its weights hash, None when unknown)."""

    name: Str
    n_layers: Int
    d_model: Int
    sha256: Str | None

    def to_json(self) -> dict[str, Any]:
        """The ``model`` object."""
        return {"name": self.name, "n_layers": self.n_layers, "d_model": self.d_model, "sha256": self.sha256}


@dataclass(frozen=True)
class SplitData(FileObject):
    """One split of one prompt role: how many prompts and their content hash."""

    n: Int
    sha256: Str

    def to_json(self) -> dict[str, Any]:
        """``{"n", "sha256"}``."""
        return {"n": self.n, "sha256": self.sha256}


@dataclass(frozen=True)
class DataSummary(FileObject):
    """``data``: per role (``harmful``, ``harmless``, ``lookalike``) and split (``train``, ``val``, ``test``), a :class:`SplitData`."""

    roles: Mapping[str, Mapping[str, SplitData]]

    _file_form: ClassVar[Any] = Mapping[str, Mapping[str, SplitData]]

    @classmethod
    def _from_file(cls, roles: Mapping[str, Mapping[str, SplitData]]) -> DataSummary:
        return cls(roles)

    def to_json(self) -> dict[str, Any]:
        """The ``data`` object."""
        return {role: {split: s.to_json() for split, s in splits.items()} for role, splits in self.roles.items()}


@dataclass(frozen=True)
class Curves(FileObject):
    """``directions.curves``: per layer at one position, the direction's norm and cosine similarities.

    ``cosine_adjacent`` (to the previous layer's; None for the first) and ``cosine_to_chosen``
    (to the chosen layer's; None when nothing was chosen, and then absent from the file).
    """

    layers: tuple[Int, ...]
    position: Int
    norm: tuple[Number | None, ...]
    cosine_adjacent: tuple[Number | None, ...]
    cosine_to_chosen: tuple[Number | None, ...] | None = None

    def cosine(self) -> dict[str, tuple[float | None, ...]]:
        """The cosine curves present, by their file name."""
        out = {"cosine_adjacent": self.cosine_adjacent}
        if self.cosine_to_chosen is not None:
            out["cosine_to_chosen"] = self.cosine_to_chosen
        return out

    def to_json(self) -> dict[str, Any]:
        """The ``curves`` object."""
        return {"layers": list(self.layers), "position": self.position, "norm": list(self.norm),
                **{k: list(v) for k, v in self.cosine().items()}}


@dataclass(frozen=True)
class Directions(FileObject):
    """``directions``: the difference-in-means candidates (component, positions, layers, prompt counts) and their :class:`Curves`."""

    component: Str
    positions: tuple[Int, ...]
    layers: tuple[Int, ...]
    n_pos: Int
    n_neg: Int
    curves: Curves

    def to_json(self) -> dict[str, Any]:
        """The ``directions`` object."""
        return {"component": self.component, "positions": list(self.positions), "layers": list(self.layers), "n_pos": self.n_pos,
                "n_neg": self.n_neg, "curves": self.curves.to_json()}


@dataclass(frozen=True)
class Grid(FileObject):
    """One candidate score over layers x positions (``values[layer][position]``, None: not scored), for a heatmap."""

    key: Str
    name: Str
    layers: tuple[Int, ...]
    positions: tuple[Int, ...]
    values: tuple[tuple[Number | None, ...], ...]

    def to_json(self) -> dict[str, Any]:
        """``{"key", "name", "layers", "positions", "values"}``."""
        return {"key": self.key, "name": self.name, "layers": list(self.layers), "positions": list(self.positions),
                "values": [list(row) for row in self.values]}


@dataclass(frozen=True)
class SelectionSummary(FileObject):
    """``selection``: direction selection on the val split.

    ``best`` (the chosen candidate row, or null), ``table`` (every candidate row, as
    :attr:`alignscope.steering.selection.Selection.rows`), ``grids`` (:class:`Grid` per score),
    ``sort_key`` and ``sort_ascending`` (how the report ranks the table), and the selection's
    ``baseline`` scores, ``config`` and ``search_seconds``. The last four are absent from the
    file when None.
    """

    best: JsonRow | None
    table: tuple[JsonRow, ...]
    grids: tuple[Grid, ...]
    sort_key: Str
    sort_ascending: Bool | None = None
    baseline: JsonRow | None = None
    config: JsonRow | None = None
    search_seconds: Number | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``selection`` object."""
        out: dict[str, Any] = {"best": self.best, "table": list(self.table), "grids": [g.to_json() for g in self.grids],
                               "sort_key": self.sort_key}
        for key, value in (("sort_ascending", self.sort_ascending), ("baseline", self.baseline), ("config", self.config),
                           ("search_seconds", self.search_seconds)):
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class InterventionSummary(FileObject):
    """``intervention``: the saved intervention.

    ``kind``, ``params`` (the chosen settings; absent when None), ``description``, ``search``
    (search table name -> rows; train and val only), ``search_seconds`` (absent when None) and
    ``file`` (``intervention.safetensors``, relative to the run directory).
    """

    kind: Str
    description: Str
    search: Mapping[str, tuple[JsonRow, ...]]
    file: Str
    params: JsonRow | None = None
    search_seconds: Number | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``intervention`` object."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.params is not None:
            out["params"] = self.params
        out.update(description=self.description, search={k: list(rows) for k, rows in self.search.items()})
        if self.search_seconds is not None:
            out["search_seconds"] = self.search_seconds
        out["file"] = self.file
        return out


@dataclass(frozen=True)
class Example(FileObject):
    """One test prompt's generations before and after the intervention, with the detector's verdicts."""

    prompt: Str
    label: Str | None
    category: Str | None
    before: Str
    after: Str
    refused_before: Bool
    refused_after: Bool

    def to_json(self) -> dict[str, Any]:
        """``{"prompt", "label", "category", "before", "after", "refused_before", "refused_after"}``."""
        return {"prompt": self.prompt, "label": self.label, "category": self.category, "before": self.before, "after": self.after,
                "refused_before": self.refused_before, "refused_after": self.refused_after}


@dataclass(frozen=True)
class StageTiming(FileObject):
    """One stage's wall time (rounded to ms) and whether its checkpoint was reused."""

    seconds: Number
    reused: Bool

    def to_json(self) -> dict[str, Any]:
        """``{"seconds", "reused"}``."""
        return {"seconds": self.seconds, "reused": self.reused}


@dataclass(frozen=True)
class StudyResults(FileObject):
    """Everything the refusal study found; ``results.json`` is :meth:`to_json`, keys in this order.

    Attributes:
        model: :class:`ModelInfo` (name, n_layers, d_model, sha256).
        config: the run config as a JSON object (``RunConfig.to_dict()``).
        data: :class:`DataSummary` (prompt counts and hashes per role and split).
        baseline: :class:`EvalSummary` on the test split without intervention.
        after: :class:`EvalSummary` on the test split with the intervention.
        kl: :class:`KlSummary` on the harmless test prompts.
        gate: :class:`GateSummary` for a conditional intervention, else None (null in the file).
        comparisons: :class:`EvalSummary` per unconditional comparison kind (``addition``, ``ablation``).
        directions: :class:`Directions` with their :class:`Curves`.
        selection: :class:`SelectionSummary` (grids, table, best).
        intervention: :class:`InterventionSummary` (kind, params, description, search, file).
        examples: :class:`Example` generations (changed behaviour first).
        timings: :class:`StageTiming` per stage (``report`` included in the file).
        seconds: wall time of the run.
    """

    model: ModelInfo
    config: JsonRow
    data: DataSummary
    baseline: EvalSummary
    after: EvalSummary
    kl: KlSummary
    gate: GateSummary | None
    comparisons: Mapping[str, EvalSummary]
    directions: Directions
    selection: SelectionSummary
    intervention: InterventionSummary
    examples: tuple[Example, ...]
    timings: Mapping[str, StageTiming]
    seconds: Number

    def to_json(self) -> dict[str, Any]:
        """The ``results.json`` object (strict JSON values)."""
        return {
            "model": self.model.to_json(), "config": self.config, "data": self.data.to_json(), "baseline": self.baseline.to_json(),
            "after": self.after.to_json(), "kl": self.kl.to_json(), "gate": None if self.gate is None else self.gate.to_json(),
            "comparisons": {k: c.to_json() for k, c in self.comparisons.items()}, "directions": self.directions.to_json(),
            "selection": self.selection.to_json(), "intervention": self.intervention.to_json(),
            "examples": [e.to_json() for e in self.examples], "timings": {k: t.to_json() for k, t in self.timings.items()},
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, value: Any, path: str | Path) -> StudyResults:
        """Read and validate a parsed ``results.json``; errors name ``path`` and the field path.

        Raises:
            InputError: a field is missing, unexpected or of the wrong type
                (``results.json, field 'after.n': expected an object``).
        """
        return parse(cls, value, path)

    @classmethod
    def read(cls, path: str | Path) -> StudyResults:
        """Read ``results.json`` from disk (missing file, bad JSON and bad fields raise :class:`InputError`)."""
        return cls.from_json(read_json(path, what="results file"), path)
