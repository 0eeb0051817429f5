"""A tiny stand-in intervention, a member of the typed family (for tests only)."""

from __future__ import annotations

from typing import Any

import torch

from alignscope.hooks.handle import HookHandle
from alignscope.hooks.writes import HookFn
from alignscope.sites import Site
from alignscope.steering.interventions import StatelessIntervention


class AddVector(StatelessIntervention):
    """Adds ``vector`` to the output of one hook point at every position, counting its calls."""

    kind = "test_add"

    def __init__(self, site: Site, vector: torch.Tensor) -> None:
        self.site = site
        self.vector = vector
        self.calls = 0

    def hooks(self, lm: Any, handle: HookHandle) -> list[tuple[Site, HookFn]]:
        def hook(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return output + self.vector.to(output.dtype)

        return [(self.site, hook)]

    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        return {"vector": self.vector}, {"kind": self.kind, "site": str(self.site)}
