"""Tuned lens (Belrose et al. 2023): one affine translator per layer, then the model's own read-out.

Translator ``l`` maps ``resid_post`` of block ``l`` to ``h + h @ W_l.T + b_l``; ``W`` and ``b``
start at zero, so an untrained tuned lens *is* the logit lens. The last block needs no
translator (its read-out is the model's output), so there are ``n_layers - 1`` of them, stored
stacked so that all layers translate in one batched matmul. Saved as safetensors with string
metadata (model, sizes, training summary).

Example:
    >>> lens = TunedLens.for_model(lm)                    # doctest: +SKIP
    >>> lens.save("lens_dir", model=lm.name)              # doctest: +SKIP
    >>> lens = TunedLens.load("lens_dir", lm)             # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors import safe_open

from alignscope.errors import InputError
from alignscope.io import save_safetensors
from alignscope.models.loader import LoadedModel

LENS_FILE = "tuned_lens.safetensors"
FORMAT = "alignscope-tuned-lens/1"


class TunedLens(torch.nn.Module):
    """Stacked affine translators for layers ``0 .. n_layers-2`` (identity-initialised).

    Attributes:
        weight: ``(n_layers - 1, d_model, d_model)`` residual weights (zero at init).
        bias: ``(n_layers - 1, d_model)`` biases (zero at init).
    """

    def __init__(self, n_layers: int, d_model: int) -> None:
        super().__init__()
        if n_layers < 1 or d_model < 1:
            raise InputError(f"a tuned lens needs n_layers >= 1 and d_model >= 1, got {n_layers}, {d_model}")
        self.n_layers = n_layers
        self.d_model = d_model
        self.weight = torch.nn.Parameter(torch.zeros(n_layers - 1, d_model, d_model))
        self.bias = torch.nn.Parameter(torch.zeros(n_layers - 1, d_model))

    @classmethod
    def for_model(cls, lm: LoadedModel) -> TunedLens:
        """An identity (untrained) lens sized for ``lm``, on its device."""
        return cls(lm.n_layers, lm.d_model).to(lm.device)

    def translate(self, resid: Float[torch.Tensor, "layers ... d"]) -> Float[torch.Tensor, "layers ... d"]:
        """Translate every layer's residual; the last layer passes through unchanged.

        Args:
            resid: ``(n_layers, ..., d_model)`` (all layers) or ``(n_layers - 1, ..., d_model)``.
        """
        n = self.n_layers - 1
        if resid.shape[0] not in (n, n + 1) or resid.shape[-1] != self.d_model:
            raise InputError(f"resid of shape {tuple(resid.shape)} does not fit a lens for {self.n_layers} layers "
                             f"of width {self.d_model}")
        head, tail = resid[:n], resid[n:]
        flat = head.reshape(n, -1, self.d_model).to(self.weight.dtype)
        out = flat + torch.baddbmm(self.bias.unsqueeze(1), flat, self.weight.transpose(1, 2))
        out = out.reshape(head.shape).to(resid.dtype)
        return torch.cat([out, tail], dim=0) if tail.shape[0] else out

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The parameters as a flat tensor dict (for safetensors)."""
        return {"weight": self.weight.detach(), "bias": self.bias.detach()}

    def save(self, directory: str | Path, *, model: str, extra: Mapping[str, object] | None = None) -> Path:
        """Write ``tuned_lens.safetensors`` (atomic) with metadata; returns its path."""
        path = Path(directory) / LENS_FILE
        meta = {"format": FORMAT, "model": model, "n_layers": str(self.n_layers), "d_model": str(self.d_model),
                "extra": json.dumps(dict(extra or {}))}
        save_safetensors(path, self.state_tensors(), meta)
        return path

    @classmethod
    def load(cls, directory: str | Path, lm: LoadedModel | None = None) -> TunedLens:
        """Load a lens saved by :meth:`save` (a directory or the file itself).

        Raises:
            InputError: missing file, foreign format, or sizes that do not fit ``lm``.
        """
        path = Path(directory)
        path = path / LENS_FILE if path.is_dir() else path
        if not path.is_file():
            raise InputError(f"no tuned lens here (expected {LENS_FILE})", path=path)
        meta = read_metadata(path)
        if meta.get("format") != FORMAT:
            raise InputError(f"not an alignscope tuned lens (format {meta.get('format')!r}, expected {FORMAT!r})",
                             path=path, field="format")
        lens = cls(int(meta["n_layers"]), int(meta["d_model"]))
        with safe_open(str(path), framework="pt") as fh:
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
        try:
            lens.load_state_dict(tensors)
        except RuntimeError as exc:
            raise InputError(f"tensors do not match the declared sizes: {exc}", path=path) from None
        if lm is not None:
            if (lens.n_layers, lens.d_model) != (lm.n_layers, lm.d_model):
                raise InputError(f"lens was trained for {lens.n_layers} layers x {lens.d_model} (model {meta.get('model')}), "
                                 f"but {lm.name} has {lm.n_layers} x {lm.d_model}", path=path, field="model")
            lens = lens.to(lm.device)
        return lens


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types on corrupt files
        raise InputError(f"cannot read safetensors: {exc}", path=path) from None
