"""Directions from contrasting prompt sets: difference-in-means and PCA/SVD of paired differences.

* :func:`diff_in_means` captures activations of two prompt sets at every (position, layer) and
  returns ``mean(positive) - mean(negative)`` for each: the candidate directions of the
  refusal-direction method, over the post-instruction tokens (``positions="post"``) or the last
  token (``positions="last"``).
* :func:`paired_svd` takes activations of *paired* prompts (row ``i`` of each set belongs
  together), forms the differences, and returns the top singular directions per layer with
  the explained variance (RepE-style PCA when ``center=True``).

Both have pure-tensor cores (:func:`mean_difference`, :func:`svd_directions`) so they can be
checked against plain arithmetic.

Example:
    >>> md = diff_in_means(lm, harmful, harmless, positions="post")        # doctest: +SKIP
    >>> md.directions.shape                                                 # doctest: +SKIP
    torch.Size([5, 30, 576])
    >>> vec = md.direction(layer=14, position=-1)                          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float

from alignscope.activations.store import capture
from alignscope.data.prompts import PromptSet
from alignscope.errors import InputError
from alignscope.io import sha256_json
from alignscope.models.chat import render_chat
from alignscope.models.loader import LoadedModel


@dataclass(frozen=True, eq=False)
class MeanDiff:
    """Difference-in-means directions at every captured (position, layer).

    Attributes:
        directions: ``(n_positions, n_layers, d_model)``, ``mean_pos - mean_neg``.
        mean_pos: ``(n_positions, n_layers, d_model)``.
        mean_neg: ``(n_positions, n_layers, d_model)``.
        positions: offsets from the end of each prompt (``-1`` is the last token).
        layers: the captured layers.
        component: the site component read.
        n_pos: number of positive prompts.
        n_neg: number of negative prompts.
        data_sha256: hash of both prompt sets (for direction files' metadata).
    """

    directions: Float[torch.Tensor, "n_positions n_layers d_model"]
    mean_pos: Float[torch.Tensor, "n_positions n_layers d_model"]
    mean_neg: Float[torch.Tensor, "n_positions n_layers d_model"]
    positions: tuple[int, ...]
    layers: tuple[int, ...]
    component: str
    n_pos: int
    n_neg: int
    data_sha256: str = ""

    def direction(self, layer: int, position: int = -1) -> Float[torch.Tensor, " d_model"]:
        """The direction at ``layer`` and ``position`` (an offset from the end)."""
        if layer not in self.layers:
            raise InputError(f"layer {layer} was not captured; captured layers: {list(self.layers)}", field="layer")
        if position not in self.positions:
            raise InputError(f"position {position} was not captured; captured positions: {list(self.positions)}", field="position")
        return self.directions[self.positions.index(position), self.layers.index(layer)]

    def norms(self) -> Float[torch.Tensor, "n_positions n_layers"]:
        """``|direction|`` at every (position, layer)."""
        return self.directions.norm(dim=-1)

    def summary(self) -> dict[str, Any]:
        """JSON-ready shapes and per-layer norms."""
        return {"component": self.component, "positions": list(self.positions), "layers": list(self.layers),
                "n_pos": self.n_pos, "n_neg": self.n_neg, "norms": self.norms().tolist(), "data_sha256": self.data_sha256}


def mean_difference(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """``pos.mean(0) - neg.mean(0)`` over the prompt axis (shapes ``(n, ...)`` and ``(m, ...)``)."""
    if pos.shape[1:] != neg.shape[1:]:
        raise InputError(f"activation shapes differ: {tuple(pos.shape)} vs {tuple(neg.shape)}", field="activations")
    return pos.double().mean(0).float() - neg.double().mean(0).float()


def _as_positions(acts: torch.Tensor, single: bool) -> torch.Tensor:
    return acts.unsqueeze(1) if single else acts  # (n, L, d) -> (n, 1, L, d)


def _capture_set(lm: LoadedModel, prompts: PromptSet | Sequence[str], component: str, positions: str,
                 layers: Sequence[int] | None, chat: bool, batch_size: int, progress: bool) -> tuple[torch.Tensor, dict[str, Any]]:
    res = capture(lm, prompts, [component], layers=layers, positions=positions, chat=chat, batch_size=batch_size,
                  progress=progress)
    return _as_positions(res[component], res.index["layout"] == "single"), res.index


def diff_in_means(
    lm: LoadedModel,
    positive: PromptSet | Sequence[str],
    negative: PromptSet | Sequence[str],
    *,
    component: str = "resid_pre",
    positions: str = "post",
    layers: Sequence[int] | None = None,
    chat: bool = True,
    batch_size: int = 16,
    progress: bool = False,
) -> MeanDiff:
    """Difference-in-means of ``positive`` minus ``negative`` at every (position, layer).

    Args:
        lm: the loaded model.
        positive: e.g. harmful instructions.
        negative: e.g. harmless instructions.
        component: site component to read (``resid_pre`` as in the refusal-direction method).
        positions: ``post`` (post-instruction tokens), ``last`` or offsets such as ``-1,-2``.
        layers: layers to read (default: all).
        chat: chat-format the prompts.
        batch_size: prompts per forward pass.
        progress: progress bars on stderr.

    Returns:
        A :class:`MeanDiff` with ``(n_positions, n_layers, d_model)`` tensors.
    """
    pos, index = _capture_set(lm, positive, component, positions, layers, chat, batch_size, progress)
    neg, index_neg = _capture_set(lm, negative, component, positions, layers, chat, batch_size, progress)
    if index["offsets_from_end"] != index_neg["offsets_from_end"]:
        raise InputError(f"the two sets read different positions ({index['offsets_from_end']} vs {index_neg['offsets_from_end']}); "
                         "pass explicit offsets such as -1,-2", field="positions")
    mean_pos, mean_neg = pos.double().mean(0).float(), neg.double().mean(0).float()
    return MeanDiff(mean_pos - mean_neg, mean_pos, mean_neg, tuple(index["offsets_from_end"]), tuple(index["layers"]),
                    component, len(pos), len(neg), sha256_json([index["prompts_sha256"], index_neg["prompts_sha256"]]))


@dataclass(frozen=True, eq=False)
class SVDDirections:
    """Top singular directions of paired differences, per layer.

    Attributes:
        components: ``(n_layers, k, d_model)`` unit vectors, each signed to agree with the mean difference.
        singular_values: ``(n_layers, k)``.
        explained_variance: ``(n_layers, k)`` fraction of the total (centred, if ``center``) variance.
        mean_diff: ``(n_layers, d_model)`` mean paired difference.
        layers: the layers.
        center: whether the differences were centred (PCA) before the SVD.
    """

    components: Float[torch.Tensor, "n_layers k d_model"]
    singular_values: Float[torch.Tensor, "n_layers k"]
    explained_variance: Float[torch.Tensor, "n_layers k"]
    mean_diff: Float[torch.Tensor, "n_layers d_model"]
    layers: tuple[int, ...]
    center: bool

    def component(self, layer: int, k: int = 0) -> Float[torch.Tensor, " d_model"]:
        """Component ``k`` (0 = first) at ``layer``."""
        if layer not in self.layers:
            raise InputError(f"layer {layer} not available; layers: {list(self.layers)}", field="layer")
        if not 0 <= k < self.components.shape[1]:
            raise InputError(f"component {k} out of range 0..{self.components.shape[1] - 1}", field="component")
        return self.components[self.layers.index(layer), k]


def svd_directions(
    pos: Float[torch.Tensor, "n n_layers d"], neg: Float[torch.Tensor, "n n_layers d"], *, k: int = 4, center: bool = True,
    layers: Sequence[int] | None = None,
) -> SVDDirections:
    """SVD of the paired differences ``pos[i] - neg[i]`` per layer.

    Args:
        pos: ``(n_pairs, n_layers, d_model)`` activations of the first member of each pair.
        neg: the same for the second member.
        k: number of components kept.
        center: subtract the mean difference first (PCA); else the SVD of the raw differences.
        layers: labels of the layer axis (default ``0..n_layers-1``).
    """
    if pos.shape != neg.shape or pos.ndim != 3:
        raise InputError(f"paired activations must share a shape (n, n_layers, d); got {tuple(pos.shape)} and {tuple(neg.shape)}",
                         field="activations")
    diffs = (pos.double() - neg.double()).transpose(0, 1)  # (L, n, d)
    mean = diffs.mean(1)
    x = diffs - mean.unsqueeze(1) if center else diffs
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    k = min(k, s.shape[1])
    total = (s * s).sum(-1, keepdim=True).clamp_min(1e-30)
    comps = vh[:, :k]
    signs = torch.sign(torch.einsum("lkd,ld->lk", comps, mean))
    signs[signs == 0] = 1
    names = tuple(range(pos.shape[1])) if layers is None else tuple(layers)
    return SVDDirections((comps * signs.unsqueeze(-1)).float(), s[:, :k].float(), (s[:, :k] ** 2 / total).float(),
                         mean.float(), names, center)


def paired_svd(
    lm: LoadedModel,
    first: PromptSet | Sequence[str],
    second: PromptSet | Sequence[str],
    *,
    k: int = 4,
    center: bool = True,
    component: str = "resid_pre",
    position: str = "last",
    layers: Sequence[int] | None = None,
    chat: bool = True,
    batch_size: int = 16,
    progress: bool = False,
) -> SVDDirections:
    """Capture paired prompts (``first[i]`` with ``second[i]``) at one position and run :func:`svd_directions`."""
    if len(first) != len(second):
        raise InputError(f"paired sets must have the same length, got {len(first)} and {len(second)}", field="pairs")
    a, idx = _capture_set(lm, first, component, position, layers, chat, batch_size, progress)
    b, _ = _capture_set(lm, second, component, position, layers, chat, batch_size, progress)
    if a.shape[1] != 1:
        raise InputError(f"paired SVD reads one position; got {a.shape[1]} ({position!r})", field="position")
    return svd_directions(a[:, 0], b[:, 0], k=k, center=center, layers=idx["layers"])


def suffix_contrast(
    lm: LoadedModel,
    prompts: PromptSet | Sequence[str],
    first_suffix: str,
    second_suffix: str,
    *,
    component: str = "resid_pre",
    layers: Sequence[int] | None = None,
    chat: bool = True,
    batch_size: int = 16,
    progress: bool = False,
) -> Float[torch.Tensor, "n_layers d_model"]:
    """Mean last-token activation of ``prompt + first_suffix`` minus that of ``prompt + second_suffix``.

    With ``first_suffix="I'm sorry, but I can't"`` and ``second_suffix="Sure, here is how"`` this
    is a "refusal mode" behaviour vector: the same prompts, with the assistant's answer begun
    as a refusal versus as compliance. In chat mode the suffix follows the rendered template
    (the assistant turn); in raw mode it follows the prompt text.

    Returns:
        ``(n_layers, d_model)`` for ``layers`` (default: all), in that order.
    """
    texts = prompts.texts if isinstance(prompts, PromptSet) else list(prompts)
    if not texts:
        raise InputError("no prompts given", field="prompts")
    base = [render_chat(lm.tokenizer, t)[0] if chat else t for t in texts]
    kw: dict[str, Any] = {"layers": layers, "positions": "last", "chat": False, "batch_size": batch_size, "progress": progress}
    a = capture(lm, [b + first_suffix for b in base], [component], **kw)[component]
    b = capture(lm, [b + second_suffix for b in base], [component], **kw)[component]
    return mean_difference(a, b)
