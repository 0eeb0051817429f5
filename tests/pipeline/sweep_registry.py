"""A small registry of tiny models for sweep tests (base, a seed-1 sibling, and the base with an intervention)."""

from __future__ import annotations

from pathlib import Path

import torch

from alignscope.models.tiny import TINY_HIDDEN
from alignscope.pipeline.sweep_metrics import SweepSettings
from alignscope.steering.intervention_io import save_intervention
from alignscope.steering.interventions import ActivationAddition

SETTINGS = SweepSettings(deltas_data="builtin:harm:test", limit=4, batch_size=4)


def write_registry(folder: Path) -> Path:
    """``folder/models.yaml`` with entries t0 (base), t1 (seed 1, partner t0), steered (t0 + an addition at layer 1, partner t0)."""
    folder.mkdir(parents=True, exist_ok=True)
    vec = torch.randn(TINY_HIDDEN, generator=torch.Generator().manual_seed(0))
    save_intervention(folder / "add.safetensors", ActivationAddition(vec, (1,), 1.0), model="tiny")
    path = folder / "models.yaml"
    path.write_text("models:\n"
                    "  t0:\n    tiny: llama\n    device: cpu\n"
                    "  t1:\n    tiny: llama\n    seed: 1\n    device: cpu\n    partner: t0\n"
                    "  steered:\n    tiny: llama\n    device: cpu\n    intervention: add.safetensors\n    partner: t0\n")
    return path
