"""Direction files: safetensors with a ``direction`` tensor ``(d_model,)`` plus string metadata.

Metadata keys (all strings): ``model``, ``layer``, ``position``, ``method``, ``data_sha256``,
and any extra ones the caller adds (e.g. ``component``, ``norm``). ``alignscope edit
--ablate-direction FILE`` reads these files.

Example:
    >>> save_direction("refusal.safetensors", vec, {"model": lm.name, "layer": 14, "position": -1,
    ...                "method": "diff_in_means", "data_sha256": md.data_sha256})   # doctest: +SKIP
    >>> d = load_direction("refusal.safetensors")                                  # doctest: +SKIP
    >>> d.vector.shape, d.layer                                                    # doctest: +SKIP
    (torch.Size([576]), 14)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float

from alignscope.errors import InputError
from alignscope.io import read_safetensors, save_safetensors

REQUIRED_META: tuple[str, ...] = ("model", "layer", "position", "method", "data_sha256")
FORMAT = "alignscope.direction/1"


@dataclass(frozen=True, eq=False)
class Direction:
    """A loaded direction file.

    Attributes:
        vector: ``(d_model,)`` float32, as saved (not normalised).
        model: model name it was extracted from.
        layer: layer it was read at (-1 if unknown).
        position: position it was read at (e.g. ``-1`` or ``post``), as text.
        method: how it was made (``diff_in_means``, ``svd``, ...).
        data_sha256: hash of the prompt data it came from.
        meta: every metadata entry, as stored.
        path: the file it was read from.
    """

    vector: Float[torch.Tensor, " d_model"]
    model: str
    layer: int
    position: str
    method: str
    data_sha256: str
    meta: dict[str, str] = field(default_factory=dict)
    path: str = ""

    def __iter__(self) -> Iterator[Any]:
        """Unpack as ``vector, meta``."""
        return iter((self.vector, self.meta))


def save_direction(path: str | Path, direction: torch.Tensor, meta: Mapping[str, Any]) -> Path:
    """Write a direction file atomically.

    Args:
        path: output ``.safetensors`` file.
        direction: ``(d_model,)`` tensor.
        meta: must hold ``model``, ``layer``, ``position``, ``method`` and ``data_sha256``;
            extra keys are kept. Values are stored as strings.

    Raises:
        InputError: wrong shape, non-finite values, or a missing metadata key.
    """
    if not isinstance(direction, torch.Tensor) or direction.ndim != 1:
        raise InputError(f"expected a (d_model,) tensor, got {getattr(direction, 'shape', type(direction).__name__)}", field="direction")
    if not torch.isfinite(direction).all():
        raise InputError("contains NaN or inf", field="direction")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise InputError(f"missing metadata {missing}; required: {', '.join(REQUIRED_META)}", field="meta")
    strings = {str(k): str(v) for k, v in meta.items()}
    strings.setdefault("norm", f"{float(direction.float().norm()):.6g}")
    strings["format"] = FORMAT
    target = Path(path)
    save_safetensors(target, {"direction": direction.detach().float()}, strings)
    return target


def load_direction(path: str | Path, *, d_model: int | None = None) -> Direction:
    """Read a direction file; ``d_model`` (when given) is checked against the tensor's length.

    Raises:
        InputError: missing file, no ``direction`` tensor, wrong shape or width; the message
            names the file and the field.
    """
    target = Path(path)
    tensors, meta = read_safetensors(target, "direction file")
    tensor = tensors.get("direction")
    if tensor is None:
        raise InputError(f"no 'direction' tensor; the file holds {list(tensors)}", path=target, field="direction")
    if tensor.ndim != 1:
        raise InputError(f"'direction' must have shape (d_model,), got {tuple(tensor.shape)}", path=target, field="direction")
    if d_model is not None and tensor.shape[0] != d_model:
        raise InputError(f"'direction' has {tensor.shape[0]} entries but the model's d_model is {d_model}",
                         path=target, field="direction")
    vec = tensor.float()
    if not torch.isfinite(vec).all() or float(vec.norm()) == 0.0:
        raise InputError("'direction' is zero or contains NaN/inf", path=target, field="direction")
    try:
        layer = int(meta.get("layer", "-1"))
    except ValueError:
        raise InputError(f"metadata 'layer' is not an integer: {meta.get('layer')!r}", path=target, field="layer") from None
    return Direction(vec, meta.get("model", ""), layer, meta.get("position", ""), meta.get("method", ""),
                     meta.get("data_sha256", ""), meta, str(target))
