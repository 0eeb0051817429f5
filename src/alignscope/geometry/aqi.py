"""The Alignment Quality Index (Borah et al., EMNLP 2025, arXiv 2506.13901): how well a model's own hidden states
separate safe from unsafe prompts, per layer, per axiom and overall, with bootstrap 95% intervals.

:func:`measure_aqi` pools each prompt's ``resid_post`` (see :mod:`alignscope.geometry.pooling`), optionally
reduces it (:mod:`alignscope.geometry.reduce`), and computes the cluster indices of the safe and unsafe
clusters (:mod:`alignscope.geometry.indices`) and both normalisations (:mod:`alignscope.geometry.normalise`).

* The chosen representation is one layer (default ``n_layers // 2``, the middle layer, fixed in advance:
  never chosen on the data measured) or ``learned``: a weighting over layers fitted on a TRAIN set, which
  must not share prompts with the data measured.
* ``per_layer`` gives the absolute AQI (and CHI, XB, interval) of every layer with the same token pooling
  (``mean`` for ``learned``).
* Intervals: basic (reverse-percentile) bootstrap over prompts, resampled within each label (``bootstrap`` resamples, seeded);
  with a reduction the reduced points are resampled (the reduction is fitted once per subset).
* With ``tsne`` or ``pca`` every subset (each axiom, and all prompts) is reduced on its own.

Example:
    >>> result = measure_aqi(lm, load_axiom_set("builtin:axioms:test"), AQISettings())   # doctest: +SKIP
    >>> result.to_json()["aqi"]                                                           # doctest: +SKIP
    41.7
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from alignscope.data.axioms import LABELS, AxiomSet
from alignscope.errors import InputError
from alignscope.geometry.indices import cluster_indices, two_cluster_chi_xb
from alignscope.geometry.normalise import ABSOLUTE_NOTE, GAMMA, RELATIVE_NOTE, absolute_aqi, absolute_chi, absolute_xb, combine, relative_aqi
from alignscope.geometry.pooling import LayerWeights, TokenPool, fit_layer_weights, layer_states
from alignscope.geometry.reduce import REDUCTIONS, reduce_points
from alignscope.models.loader import LoadedModel

POOLS = ("mean", "last", "learned")


@dataclass(frozen=True)
class AQISettings:
    """How :func:`measure_aqi` measures.

    Attributes:
        layer: the layer whose ``resid_post`` is measured; None: ``n_layers // 2``. Ignored with ``pool="learned"``.
        pool: ``mean`` (over real tokens), ``last`` (last token) or ``learned`` (weighting over layers of the mean).
        reduce: ``none``, ``pca`` or ``tsne`` before the indices.
        n_components: dimensions kept by ``pca``/``tsne``.
        bootstrap: resamples for the 95% intervals (0: no interval, ``[aqi, aqi]``).
        seed: seeds the bootstrap, t-SNE and the layer-weight fit.
        batch_size: prompts per forward pass.
        chat: chat-template each prompt as a user message (``False``: raw text).
        gamma: the weight of the CHI term in the AQI.
        weighting: ``softmax`` or ``sparsemax`` layer weights (``learned``).
        steps: optimisation steps of the layer-weight fit.
    """

    layer: int | None = None
    pool: str = "mean"
    reduce: str = "none"
    n_components: int = 3
    bootstrap: int = 1000
    seed: int = 0
    batch_size: int = 16
    chat: bool = True
    gamma: float = GAMMA
    weighting: str = "softmax"
    steps: int = 300

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise InputError(f"unknown pooling {self.pool!r}; expected one of {', '.join(POOLS)}", field="pool")
        if self.reduce not in REDUCTIONS:
            raise InputError(f"unknown reduction {self.reduce!r}; expected one of {', '.join(REDUCTIONS)}", field="reduce")
        if self.bootstrap < 0 or self.batch_size < 1 or not 0 <= self.gamma <= 1:
            raise InputError(f"bad settings: bootstrap={self.bootstrap}, batch_size={self.batch_size}, gamma={self.gamma}",
                             field="settings")

    @property
    def token_pool(self) -> TokenPool:
        """The per-layer token pooling (``mean`` under ``learned``)."""
        return "last" if self.pool == "last" else "mean"


@dataclass(frozen=True)
class LayerAQI:
    """Absolute AQI of one layer, its raw CHI and XB, and the bootstrap interval of the AQI."""

    layer: int
    aqi: float
    chi: float
    xb: float
    ci95: tuple[float, float]


@dataclass(frozen=True)
class AxiomAQI:
    """AQI of one axiom at the chosen representation: absolute, relative (within this run), interval, counts, raw CHI and XB."""

    aqi: float
    aqi_relative: float
    ci95: tuple[float, float]
    n: dict[str, int]
    chi: float
    xb: float


@dataclass(frozen=True)
class AQIResult:
    """Everything ``alignscope aqi`` reports; :meth:`to_json` is its ``--json`` object and ``result.json``."""

    aqi: float
    aqi_relative: float
    chi: float
    xb: float
    davies_bouldin: float
    dunn: float
    ci95: tuple[float, float]
    n: dict[str, int]
    layer: int | str
    per_layer: tuple[LayerAQI, ...]
    per_axiom: dict[str, AxiomAQI]
    model: str = ""
    data: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    layer_weights: tuple[float, ...] | None = None
    seconds: float = 0.0

    def best_layers(self, k: int = 3) -> list[int]:
        """The ``k`` layers of highest absolute AQI, best first."""
        return [r.layer for r in sorted(self.per_layer, key=lambda r: -r.aqi)[:k]]

    def to_json(self) -> dict[str, Any]:
        """The JSON object (the ``--json`` line of ``alignscope aqi`` and ``result.json``)."""
        return {
            "aqi": self.aqi, "aqi_relative": self.aqi_relative, "chi": self.chi, "xb": self.xb,
            "davies_bouldin": self.davies_bouldin, "dunn": self.dunn, "ci95": list(self.ci95), "n": dict(self.n),
            "layer": self.layer,
            "per_layer": [{**asdict(r), "ci95": list(r.ci95)} for r in self.per_layer],
            "per_axiom": {a: {**asdict(r), "ci95": list(r.ci95)} for a, r in self.per_axiom.items()},
            "model": self.model, "data": self.data, "settings": dict(self.settings),
            "layer_weights": None if self.layer_weights is None else list(self.layer_weights),
            "seconds": self.seconds, "normalisation": {"aqi": ABSOLUTE_NOTE, "aqi_relative": RELATIVE_NOTE},
        }

    @classmethod
    def from_json(cls, obj: Any, file: str | None = None) -> AQIResult:
        """The result :meth:`to_json` wrote (``file`` names it in errors).

        Raises:
            InputError: a missing or mistyped field (its dotted path named).
        """
        r = _Reader(file)
        top = r.obj(obj, "")
        per_layer = tuple(_layer_row(r, row, f"per_layer.{i}") for i, row in enumerate(r.items(top, "per_layer")))
        per_axiom = {a: AxiomAQI(aqi=r.num(row, f"per_axiom.{a}.aqi"), aqi_relative=r.num(row, f"per_axiom.{a}.aqi_relative"),
                                 ci95=r.pair(row, f"per_axiom.{a}.ci95"), n=r.counts(row, f"per_axiom.{a}.n"),
                                 chi=r.num(row, f"per_axiom.{a}.chi"), xb=r.num(row, f"per_axiom.{a}.xb"))
                     for a, row in r.obj(top.get("per_axiom"), "per_axiom").items()}
        layer = top.get("layer")
        if not (layer == "learned" or (isinstance(layer, int) and not isinstance(layer, bool))):
            raise InputError(f"expected an integer or 'learned', got {layer!r}", path=file, field="layer")
        weights = top.get("layer_weights")
        return cls(aqi=r.num(top, "aqi"), aqi_relative=r.num(top, "aqi_relative"), chi=r.num(top, "chi"), xb=r.num(top, "xb"),
                   davies_bouldin=r.num(top, "davies_bouldin"), dunn=r.num(top, "dunn"), ci95=r.pair(top, "ci95"),
                   n=r.counts(top, "n"), layer=layer, per_layer=per_layer, per_axiom=per_axiom,
                   model=str(top.get("model", "")), data=str(top.get("data", "")), settings=r.obj(top.get("settings", {}), "settings"),
                   layer_weights=None if weights is None else tuple(r.num({"w": w}, f"layer_weights.{i}.w")
                                                                    for i, w in enumerate(r.items(top, "layer_weights"))),
                   seconds=float(top.get("seconds", 0.0)))


def _layer_row(r: _Reader, row: Any, path: str) -> LayerAQI:
    return LayerAQI(layer=r.integer(row, f"{path}.layer"), aqi=r.num(row, f"{path}.aqi"), chi=r.num(row, f"{path}.chi"),
                    xb=r.num(row, f"{path}.xb"), ci95=r.pair(row, f"{path}.ci95"))


class _Reader:
    """Typed field access for :meth:`AQIResult.from_json`, naming the file and the dotted field path on error."""

    def __init__(self, file: str | None) -> None:
        self.file = file

    def _fail(self, path: str, expected: str, got: Any) -> InputError:
        return InputError(f"expected {expected}, got {got!r}", path=self.file, field=path or "<root>")

    def obj(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self._fail(path, "an object", value)
        return dict(value)

    def _get(self, row: Any, path: str) -> Any:
        key = path.rpartition(".")[2]
        if not isinstance(row, Mapping) or key not in row:
            raise self._fail(path, "a value", None)
        return row[key]

    def num(self, row: Any, path: str) -> float:
        value = self._get(row, path)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(path, "a number", value)
        return float(value)

    def integer(self, row: Any, path: str) -> int:
        value = self._get(row, path)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(path, "an integer", value)
        return value

    def items(self, row: Any, path: str) -> list[Any]:
        value = self._get(row, path)
        if not isinstance(value, list):
            raise self._fail(path, "a list", value)
        return value

    def pair(self, row: Any, path: str) -> tuple[float, float]:
        value = self.items(row, path)
        if len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, int | float) for v in value):
            raise self._fail(path, "[lo, hi]", value)
        return float(value[0]), float(value[1])

    def counts(self, row: Any, path: str) -> dict[str, int]:
        value = self.obj(self._get(row, path), path)
        for label in LABELS:
            n = value.get(label)
            if isinstance(n, bool) or not isinstance(n, int):
                raise self._fail(f"{path}.{label}", "an integer", n)
        return {label: int(value[label]) for label in LABELS}


def bootstrap_aqi(a: NDArray[np.float64], b: NDArray[np.float64], *, n_boot: int, seed: int,
                  gamma: float = GAMMA) -> tuple[float, float]:
    """Basic (reverse-percentile) bootstrap 95% interval ``[2 aqi - q97.5, 2 aqi - q2.5]`` of the absolute AQI of ``a`` and ``b``.

    Prompts are resampled within each cluster. The sample AQI overstates separation (a finite sample's centroid gap
    includes noise, ``E|ca - cb|^2 = |ma - mb|^2 + tr(Sa)/na + tr(Sb)/nb``), and resampling repeats that bias, so with
    few prompts in many dimensions a plain percentile interval can lie wholly above the estimate. The basic interval
    subtracts the bootstrap's estimate of that bias, so it can lie below the estimate instead. Clipped to 0-100.
    """
    chi0, xb0 = two_cluster_chi_xb(a, b)
    value = float(combine(absolute_chi(chi0, len(a) + len(b)), absolute_xb(xb0), gamma)[0])
    if n_boot == 0:
        return value, value
    rng = np.random.default_rng(seed)
    wa = rng.multinomial(len(a), np.full(len(a), 1.0 / len(a)), size=n_boot).astype(np.float64)
    wb = rng.multinomial(len(b), np.full(len(b), 1.0 / len(b)), size=n_boot).astype(np.float64)
    chi, xb = two_cluster_chi_xb(a, b, wa, wb)
    values = combine(absolute_chi(chi, len(a) + len(b)), absolute_xb(xb), gamma)
    q_lo, q_hi = np.percentile(values, [2.5, 97.5])
    return float(np.clip(2 * value - q_hi, 0.0, 100.0)), float(np.clip(2 * value - q_lo, 0.0, 100.0))


def _labels(items: Sequence[Any]) -> NDArray[np.int64]:
    return np.asarray([LABELS.index(i.label) for i in items], dtype=np.int64)


def _partition(x: NDArray[np.float64], labels: NDArray[np.int64], s: AQISettings) -> tuple[Any, tuple[float, float], NDArray[np.float64]]:
    points = reduce_points(x, s.reduce, n_components=s.n_components, seed=s.seed)
    ci = bootstrap_aqi(points[labels == 0], points[labels == 1], n_boot=s.bootstrap, seed=s.seed, gamma=s.gamma)
    return cluster_indices(points, labels), ci, points


def _per_layer(states: NDArray[np.float64], labels: NDArray[np.int64], s: AQISettings) -> tuple[LayerAQI, ...]:
    out = []
    n = len(labels)
    for layer in range(states.shape[1]):
        points = reduce_points(states[:, layer], s.reduce, n_components=s.n_components, seed=s.seed)
        chi, xb = (float(v[0]) for v in two_cluster_chi_xb(points[labels == 0], points[labels == 1]))
        ci = bootstrap_aqi(points[labels == 0], points[labels == 1], n_boot=s.bootstrap, seed=s.seed, gamma=s.gamma)
        out.append(LayerAQI(layer, absolute_aqi(chi, xb, n, s.gamma), chi, xb, ci))
    return tuple(out)


def _check_layer(lm: LoadedModel, s: AQISettings) -> int:
    layer = lm.n_layers // 2 if s.layer is None else s.layer
    if not 0 <= layer < lm.n_layers:
        raise InputError(f"layer {layer} out of range; this model has layers 0..{lm.n_layers - 1}", field="layer")
    return layer


def _fit(lm: LoadedModel, data: AxiomSet, fit: AxiomSet | None, s: AQISettings, progress: bool) -> LayerWeights:
    if fit is None:
        raise InputError("learned pooling needs train data to fit the layer weights (fit=...; the CLI's --fit-data)", field="fit_data")
    shared = set(fit.texts) & set(data.texts)
    if shared:
        raise InputError(f"the fit data shares {len(shared)} prompt(s) with the data measured (e.g. {sorted(shared)[0]!r}); "
                         "fit on a train split and measure on another (e.g. builtin:axioms:test)", field="fit_data")
    states = layer_states(lm, fit.texts, token_pool="mean", chat=s.chat, batch_size=s.batch_size, progress=progress)
    return fit_layer_weights(states, _labels(fit.items), weighting=s.weighting, steps=s.steps, seed=s.seed)  # type: ignore[arg-type]


def measure_aqi(lm: LoadedModel, data: AxiomSet, settings: AQISettings, *, fit: AxiomSet | None = None,
                progress: bool = False) -> AQIResult:
    """AQI of ``lm`` on ``data``: per layer, per axiom and overall, with bootstrap intervals.

    Args:
        lm: the model.
        data: safe/unsafe prompts by axiom (every axiom with at least 2 of each label).
        settings: layer, pooling, reduction, bootstrap and encoding.
        fit: train prompts for ``pool="learned"`` (must not share prompts with ``data``).
        progress: show a progress bar over the extraction batches.

    Raises:
        InputError: a layer out of range, learned pooling without (or with overlapping) fit data, or bad settings.
    """
    start = time.perf_counter()
    s = settings
    layer = _check_layer(lm, s)
    weights = _fit(lm, data, fit, s, progress) if s.pool == "learned" else None
    states = layer_states(lm, data.texts, token_pool=s.token_pool, chat=s.chat, batch_size=s.batch_size, progress=progress)
    labels = _labels(data.items)
    chosen = weights.apply(states) if weights is not None else states[:, layer]
    overall, ci, _ = _partition(chosen, labels, s)
    axioms = data.axioms
    parts = {}
    for axiom in axioms:
        rows = np.asarray([i.axiom == axiom for i in data.items])
        parts[axiom] = _partition(chosen[rows], labels[rows], s)[:2]
    rel = relative_aqi([parts[a][0].chi for a in axioms] + [overall.chi], [parts[a][0].xb for a in axioms] + [overall.xb], s.gamma)
    counts = data.counts()
    per_axiom = {a: AxiomAQI(absolute_aqi(parts[a][0].chi, parts[a][0].xb, sum(counts[a].values()), s.gamma), rel[i], parts[a][1],
                             counts[a], parts[a][0].chi, parts[a][0].xb) for i, a in enumerate(axioms)}
    n: dict[str, int] = {label: int((labels == k).sum()) for k, label in enumerate(LABELS)}
    return AQIResult(
        aqi=absolute_aqi(overall.chi, overall.xb, len(labels), s.gamma), aqi_relative=rel[-1], chi=overall.chi, xb=overall.xb,
        davies_bouldin=overall.davies_bouldin, dunn=overall.dunn, ci95=ci, n=n, layer="learned" if weights is not None else layer,
        per_layer=_per_layer(states, labels, s), per_axiom=per_axiom, model=lm.name, data=data.source,
        settings={**asdict(s), "layer": layer if weights is None else None},
        layer_weights=None if weights is None else weights.weights, seconds=time.perf_counter() - start)
