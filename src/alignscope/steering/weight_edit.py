"""Weight orthogonalisation: bake directional ablation into the weights and save a plain HF model.

Directional ablation (:class:`~alignscope.steering.interventions.DirectionalAblation`) removes
the unit direction ``d`` from the residual stream's inputs: the token embedding (and GPT-2's
position embedding) and every attention-output and MLP-output projection. The same edit on the
weights, ``W <- W - d d^T W`` for each matrix (and ``b <- b - (b.d) d`` for its bias), makes
every write into the residual stream orthogonal to ``d``, so the edited model computes the
ablated model exactly (up to float rounding). Architecture paths come from the registry.

When the unembedding is tied to the embedding it is untied first (the unembedding keeps the
original weights; ``config.tie_word_embeddings`` becomes False), because ablation does not
touch the unembedding.

Gemma 2/3 (registry ``post_sublayer_norm``) normalise each sublayer's output *after* its
projection; the norm's scale re-introduces a component along ``d``, so an orthogonalised
Gemma is not the hook-ablated one. :func:`orthogonalize_to_dir` refuses such models unless
``allow_inexact=True``, in which case it warns and records ``exact: false``.

The edit works on a fresh copy reloaded from ``lm.source`` (the bridge wraps the loaded
model's modules in place) and writes ``DIR`` atomically: ``config.json``, safetensors weights,
the tokenizer and ``alignscope_edit.json`` (provenance). Plain
``AutoModelForCausalLM.from_pretrained(DIR)`` loads it.

Example:
    >>> res = orthogonalize_to_dir(lm, direction, "refusal_ablated/")     # doctest: +SKIP
    >>> res.layers_edited                                                 # doctest: +SKIP
    30
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from transformers import AutoModelForCausalLM

from alignscope.errors import AlignscopeError, InputError
from alignscope.io import atomic_dir, atomic_write_json
from alignscope.models.loader import LoadedModel
from alignscope.models.registry import ArchSpec, get_arch, resolve_module

log = logging.getLogger(__name__)
EDIT_FILE = "alignscope_edit.json"


@dataclass(frozen=True)
class WeightEditResult:
    """What :func:`orthogonalize_to_dir` did (the ``alignscope edit --json`` payload)."""

    out: str
    model: str
    model_type: str
    direction_norm: float
    layers_edited: int
    matrices_edited: int
    tied_unembedding_untied: bool
    exact: bool
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _project_rows_out(weight: torch.Tensor, d: torch.Tensor) -> None:
    """In place: ``W <- W - (W d) d^T`` for ``W`` of shape ``(rows, d_model)``."""
    w = weight.data.double()
    weight.data.copy_((w - torch.outer(w @ d, d)).to(weight.dtype))


def _project_cols_out(weight: torch.Tensor, d: torch.Tensor) -> None:
    """In place: ``W <- W - d (d^T W)`` for ``W`` of shape ``(d_model, cols)`` (nn.Linear writing d_model)."""
    w = weight.data.double()
    weight.data.copy_((w - torch.outer(d, d @ w)).to(weight.dtype))


def _edit_writer(module: torch.nn.Module, d: torch.Tensor, conv1d: bool) -> int:
    """Orthogonalise one output projection (weight and bias); returns 1."""
    weight = getattr(module, "weight")  # noqa: B009
    if conv1d:  # GPT-2 Conv1D stores (in, out): output features are columns
        _project_rows_out(weight, d)
    else:
        _project_cols_out(weight, d)
    bias = getattr(module, "bias", None)
    if bias is not None:
        b = bias.data.double()
        bias.data.copy_((b - (b @ d) * d).to(bias.dtype))
    return 1


def _untie(model: Any, spec: ArchSpec) -> bool:
    """Give the unembedding its own copy of the weights when it shares them with the embedding."""
    embed = resolve_module(model, spec.embed)
    head = model.get_output_embeddings()
    if head is None or head.weight.data_ptr() != getattr(embed, "weight").data_ptr():  # noqa: B009
        return False
    head.weight = torch.nn.Parameter(head.weight.detach().clone())
    for cfg in {id(model.config): model.config, id(model.config.get_text_config()): model.config.get_text_config()}.values():
        cfg.tie_word_embeddings = False
    return True


def orthogonalize_model(model: Any, direction: Float[torch.Tensor, " d_model"], *, allow_inexact: bool = False) -> dict[str, Any]:
    """Orthogonalise a native HF causal LM's residual-stream writers against ``direction``, in place.

    Returns:
        ``{"layers_edited", "matrices_edited", "tied_unembedding_untied", "exact"}``.

    Raises:
        AlignscopeError: the architecture has post-sublayer norms and ``allow_inexact`` is False.
        InputError: the direction's width does not match the model.
    """
    spec = get_arch(str(model.config.model_type))
    if spec.post_sublayer_norm and not allow_inexact:
        raise AlignscopeError(
            f"{spec.model_type} normalises each sublayer's output after its projection, so orthogonalising the weights "
            "does not reproduce directional ablation; use the hook-based ablation (DirectionalAblation) instead, or "
            "pass allow_inexact=True (--allow-inexact) to write an approximate edit")
    if spec.post_sublayer_norm:
        log.warning("%s has post-sublayer norms: the weight edit only approximates directional ablation", spec.model_type)
    embed = resolve_module(model, spec.embed)
    d_model = getattr(embed, "weight").shape[1]  # noqa: B009
    if direction.shape != (d_model,):
        raise InputError(f"direction has shape {tuple(direction.shape)} but the model's d_model is {d_model}", field="direction")
    d = direction.detach().double().cpu()
    d = d / d.norm()
    untied = _untie(model, spec)
    with torch.no_grad():
        _project_rows_out(getattr(embed, "weight"), d)  # noqa: B009
        n = 1
        if spec.pos_embed is not None:
            _project_rows_out(getattr(resolve_module(model, spec.pos_embed), "weight"), d)  # noqa: B009
            n += 1
        layers = list(resolve_module(model, spec.layers))  # type: ignore[call-overload]
        for layer in layers:
            n += _edit_writer(resolve_module(layer, spec.attn_out), d, spec.conv1d)
            n += _edit_writer(resolve_module(layer, spec.mlp_out), d, spec.conv1d)
    return {"layers_edited": len(layers), "matrices_edited": n, "tied_unembedding_untied": untied,
            "exact": not spec.post_sublayer_norm}


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError("output path exists and is not a directory", path=out)
    if out.is_dir() and any(out.iterdir()) and not (out / EDIT_FILE).is_file():
        raise InputError("output directory is not empty and does not hold a previous alignscope edit; choose another --out",
                         path=out)


def orthogonalize_to_dir(
    lm: LoadedModel,
    direction: Float[torch.Tensor, " d_model"],
    out: str | Path,
    *,
    allow_inexact: bool = False,
    provenance: dict[str, Any] | None = None,
) -> WeightEditResult:
    """Reload ``lm`` fresh from ``lm.source``, orthogonalise it against ``direction`` and save a plain HF directory.

    Args:
        lm: the loaded model (only its ``source``, ``name``, ``dtype`` and tokenizer are used).
        direction: ``(d_model,)``; normalised here.
        out: output directory, replaced atomically (a previous alignscope edit there is overwritten).
        allow_inexact: permit architectures where the edit is only approximate (Gemma 2/3).
        provenance: extra JSON fields recorded in ``alignscope_edit.json`` (e.g. the direction file).

    Returns:
        A :class:`WeightEditResult`.
    """
    start = time.perf_counter()
    if direction.ndim != 1 or direction.shape[0] != lm.d_model:
        raise InputError(f"direction has shape {tuple(direction.shape)} but {lm.name} has d_model {lm.d_model}", field="direction")
    norm = float(direction.float().norm())
    if norm == 0.0 or not torch.isfinite(direction).all():
        raise InputError("direction is zero or contains NaN/inf", field="direction")
    target = Path(out)
    _prepare_out(target)
    model = AutoModelForCausalLM.from_pretrained(lm.source, dtype=lm.dtype)
    stats = orthogonalize_model(model, direction, allow_inexact=allow_inexact)
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        lm.tokenizer.save_pretrained(tmp)
        result = WeightEditResult(str(target), lm.name, lm.model_type, norm, stats["layers_edited"], stats["matrices_edited"],
                                  stats["tied_unembedding_untied"], stats["exact"], time.perf_counter() - start)
        atomic_write_json(tmp / EDIT_FILE, {**result.to_json(), "source": lm.source, **(provenance or {})})
    return replace(result, seconds=time.perf_counter() - start)
