"""What every stage of a run reads (:class:`Context`) and returns (:class:`StageOutput`)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from alignscope.evals.judge import Judge
from alignscope.evals.refusal import Detector, phrase_detector
from alignscope.models.loader import LoadedModel, load_model, resolve_source
from alignscope.pipeline.config import RunConfig
from alignscope.pipeline.data import RunData


@dataclass
class StageOutput:
    """What a stage computed: JSON output, tensors, files it wrote (relative to the run dir), and the output's keys
    that say how it ran, such as wall times (kept out of the content downstream stages chain on; see
    :meth:`~alignscope.pipeline.store.StageStore.save`)."""

    output: dict[str, Any]
    tensors: dict[str, torch.Tensor] | None = None
    files: tuple[str, ...] = ()
    provenance: tuple[str, ...] = ()


@dataclass
class Context:
    """Everything a stage may read: config, prompts, output directory, and the model (loaded on first use)."""

    cfg: RunConfig
    data: RunData
    out: Path
    progress: bool = True
    _lm: LoadedModel | None = field(default=None, repr=False)

    @property
    def source(self) -> str:
        """Directory or hub id the model loads from."""
        return resolve_source(self.cfg.model)[1]

    @property
    def lm(self) -> LoadedModel:
        """The model, loaded once when a stage first needs it."""
        if self._lm is None:
            self._lm = load_model(self.cfg.model, dtype=self.cfg.dtype, device=self.cfg.device)
        return self._lm

    def seed_everything(self) -> None:
        """Seed python and torch before each stage, so a resumed stage computes what a fresh one would."""
        random.seed(self.cfg.seed)
        torch.manual_seed(self.cfg.seed)

    def detector(self) -> Detector:
        """The refusal detector the config asks for."""
        return phrase_detector(self.cfg.evaluate.refusal_phrases)

    def judge(self) -> Any:
        """The optional LLM judge."""
        j = self.cfg.evaluate.judge
        if j is None:
            return None
        return Judge(j.judge_config())
