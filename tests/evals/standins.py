"""A tiny stand-in intervention satisfying the intervention protocol (for tests only)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


class AddVector:
    """Adds ``vector`` to the output of one bridge hook point at every position."""

    kind = "test_add"

    def __init__(self, hook_name: str, vector: torch.Tensor) -> None:
        self.hook_name = hook_name
        self.vector = vector
        self.calls = 0

    def attach(self, lm: Any) -> Any:
        def hook(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return output + self.vector.to(output.dtype)

        return lm.bridge.hook_dict[self.hook_name].register_forward_hook(hook)

    @contextmanager
    def apply(self, lm: Any) -> Iterator[None]:
        handle = self.attach(lm)
        try:
            yield
        finally:
            handle.remove()

    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        return {"vector": self.vector}, {"kind": self.kind, "hook": self.hook_name}
