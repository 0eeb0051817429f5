"""The metrics a sweep can run, in one registry: name -> what it depends on and how it runs on one model.

A metric's ``run`` takes a :class:`UnitContext` (the registry entry, the settings, its output
folder and a pool that keeps one model loaded at a time) and returns a JSON-ready summary; files
it writes go into ``ctx.out_dir``. Adding a metric is one function and one :data:`METRICS` entry (``aqi`` below is the model).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from alignscope.data.axioms import load_axiom_set
from alignscope.data.text_groups import load_text_groups
from alignscope.errors import InputError
from alignscope.geometry.aqi import AQISettings, measure_aqi
from alignscope.models.chat import has_chat_template
from alignscope.models.loader import LoadedModel
from alignscope.pipeline.model_catalog import Catalog, ModelEntry
from alignscope.reports.aqi import write_aqi_outputs
from alignscope.reports.deltas import write_deltas_files
from alignscope.steering.deltas import check_same_vocab, deltas_from_states, model_states
from alignscope.steering.intervention_io import load_intervention
from alignscope.steering.interventions import HookIntervention, intervention_scope


@dataclass(frozen=True)
class SweepSettings:
    """Settings of the metrics (each metric's fingerprint covers only its own)."""

    deltas_data: str = "builtin:harm:test"
    svd_k: int = 0
    limit: int | None = None
    batch_size: int = 8
    aqi_data: str = "builtin:axioms:test"
    aqi_bootstrap: int = 1000
    aqi_chat: bool | None = None
    """Chat-template the AQI prompts; None: where the model's tokenizer has a chat template (base models read raw text)."""


class ModelPool:
    """Keeps at most one registry model loaded: asking for another frees the current one first."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.key: str | None = None
        self.lm: LoadedModel | None = None
        self.loads = 0

    def get(self, key: str) -> LoadedModel:
        """The loaded model of entry ``key`` (loading it, after freeing another, when needed)."""
        if self.key != key or self.lm is None:
            self.release()
            self.lm, self.key = self.catalog.load(key), key
            self.loads += 1
        return self.lm

    def release(self) -> None:
        """Free the loaded model (and the GPU cache)."""
        self.lm, self.key = None, None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


@dataclass
class UnitContext:
    """What a metric's ``run`` gets for one (model, metric) unit."""

    key: str
    catalog: Catalog
    settings: SweepSettings
    out_dir: Path
    cache_dir: Path
    pool: ModelPool
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def entry(self) -> ModelEntry:
        """The registry entry of this unit's model."""
        return self.catalog[self.key]

    def intervention(self, key: str | None = None) -> HookIntervention | None:
        """The intervention file of entry ``key`` (default: this unit's), read; None without one."""
        path = self.catalog.intervention_file(key or self.key)
        return None if path is None else load_intervention(path)

    def model(self, key: str | None = None) -> LoadedModel:
        """The loaded model of entry ``key`` (default: this unit's); its shape is recorded in ``info``."""
        lm = self.pool.get(key or self.key)
        if (key or self.key) == self.key:
            self.info.update({k: v for k, v in lm.info().items() if k not in ("load_seconds", "device")})
        return lm

    @contextmanager
    def active_model(self, key: str | None = None) -> Iterator[LoadedModel]:
        """The loaded model of entry ``key`` with its intervention (if any) attached for the block."""
        lm = self.model(key)
        iv = self.intervention(key)
        if iv is not None:
            iv.validate(lm)
        with intervention_scope(lm, iv):
            yield lm


@dataclass(frozen=True)
class Metric:
    """One sweep metric: its name, how it runs, which entries it applies to and which settings it reads."""

    name: str
    run: Callable[[UnitContext], dict[str, Any]]
    applies: Callable[[ModelEntry], bool]
    settings: Callable[[SweepSettings], dict[str, Any]]
    partner: bool = False
    """Whether the unit also depends on the entry's partner (its identity joins the fingerprint)."""


def _deltas(ctx: UnitContext) -> dict[str, Any]:
    """Base (the entry's partner) vs aligned (the entry): states read one model at a time, cached in ``cache_dir``."""
    s = ctx.settings
    groups = load_text_groups(s.deltas_data, limit=s.limit)
    base_key = ctx.entry.partner
    assert base_key is not None
    kw: dict[str, Any] = {"cache_dir": ctx.cache_dir, "batch_size": s.batch_size}
    base_lm = ctx.model(base_key)
    base_name, base_vocab = base_lm.name, base_lm.tokenizer.get_vocab()
    base_states = model_states(base_lm, groups.chosen, groups.rejected, intervention=ctx.intervention(base_key), **kw)
    aligned_lm = ctx.model()
    check_same_vocab(f"{base_key} ({base_name})", base_vocab, f"{ctx.key} ({aligned_lm.name})", aligned_lm.tokenizer.get_vocab())
    aligned_states = model_states(aligned_lm, groups.chosen, groups.rejected, intervention=ctx.intervention(), **kw)
    deltas = deltas_from_states(base_states, aligned_states, svd_k=s.svd_k)
    summary = {"base": base_key, "aligned": ctx.key, "data": groups.to_json(), **deltas.summary()}
    write_deltas_files(ctx.out_dir, deltas, base=base_key, aligned=ctx.key, data_sha256=groups.sha256)
    return summary


def _aqi(ctx: UnitContext) -> dict[str, Any]:
    """The entry's AQI (its intervention applied) at the middle layer, mean pooling, as ``alignscope aqi`` measures it.

    Prompts are chat-templated where the model has a chat template (``aqi_chat=None``) and read as raw
    text by a base model without one; ``settings.chat`` in the result says which.
    """
    s = ctx.settings
    data = load_axiom_set(s.aqi_data)
    with ctx.active_model() as lm:
        chat = has_chat_template(lm.tokenizer) if s.aqi_chat is None else s.aqi_chat
        result = measure_aqi(lm, data, AQISettings(bootstrap=s.aqi_bootstrap, batch_size=s.batch_size, chat=chat))
    write_aqi_outputs(ctx.out_dir, result)
    return result.to_json()


METRICS: dict[str, Metric] = {
    "aqi": Metric("aqi", _aqi, applies=lambda entry: True, settings=lambda s: {"data": s.aqi_data, "bootstrap": s.aqi_bootstrap, "chat": s.aqi_chat}),
    "deltas": Metric("deltas", _deltas, applies=lambda entry: entry.partner is not None,
                     settings=lambda s: {"data": s.deltas_data, "svd_k": s.svd_k, "limit": s.limit}, partner=True),
}
"""Every metric a sweep can run, by name."""


def parse_metrics(text: str) -> tuple[str, ...]:
    """``aqi,deltas`` -> the metric names, checked against :data:`METRICS`.

    Raises:
        InputError: an empty list or an unknown name, listing the valid ones.
    """
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise InputError(f"no metric named; valid metrics: {', '.join(METRICS)}", field="metrics")
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise InputError(f"unknown metric {', '.join(map(repr, unknown))}; valid metrics: {', '.join(METRICS)}", field="metrics")
    return names
