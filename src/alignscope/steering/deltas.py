"""Base-vs-instruct deltas: how fine-tuning moved the mean hidden state, layer by layer.

For two models that share a tokenizer (a base model and its instruction-tuned sibling),
:func:`model_deltas` computes the mean hidden state over every real token of a text set, at
every layer, in each model, for the *chosen* and the *rejected* texts of a preference set
(e.g. HH-RLHF). It reports per layer:

* ``delta_chosen = mean_instruct(chosen) - mean_base(chosen)`` (and the same for rejected), a
  candidate steering vector from what tuning changed;
* the cosine similarity between the two models' mean states;
* the norms of each mean and of each delta.

Example:
    >>> d = model_deltas(base_lm, instruct_lm, chosen_texts, rejected_texts)   # doctest: +SKIP
    >>> d.cosine_chosen.shape                                                  # doctest: +SKIP
    torch.Size([30])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from alignscope.activations.capture import CapturePlan, batches, capture_batch
from alignscope.errors import InputError
from alignscope.models.chat import encode_one
from alignscope.models.loader import LoadedModel


def mean_states(
    lm: LoadedModel, texts: Sequence[str], *, component: str = "resid_post", layers: Sequence[int] | None = None,
    chat: bool = False, batch_size: int = 8, progress: bool = False,
) -> tuple[Float[torch.Tensor, "n_layers d_model"], int]:
    """Mean activation over every real token of ``texts``, per layer, and the token count.

    Streams batch by batch, so memory holds one batch of activations at a time.
    """
    if not texts:
        raise InputError("no texts given", field="texts")
    encoded = [encode_one(lm.tokenizer, t, chat=chat) for t in texts]
    plan = CapturePlan.build(lm, [component], layers, "all")
    total: torch.Tensor | None = None
    count = 0
    pad = int(lm.tokenizer.pad_token_id or 0)
    for batch in tqdm(batches([e[0] for e in encoded], [e[1] for e in encoded], batch_size, pad),
                      desc="mean states", disable=not progress, leave=False):
        acts = capture_batch(lm, batch, plan)[component].double()  # (n_tokens, L, d)
        total = acts.sum(0) if total is None else total + acts.sum(0)
        count += acts.shape[0]
    assert total is not None
    return (total / count).float(), count


@dataclass(frozen=True, eq=False)
class ModelDeltas:
    """Per-layer comparison of two models' mean hidden states on chosen and rejected texts.

    All tensors are indexed by layer (``(n_layers,)`` or ``(n_layers, d_model)``).
    """

    layers: tuple[int, ...]
    component: str
    mean_base_chosen: Float[torch.Tensor, "n_layers d_model"]
    mean_instruct_chosen: Float[torch.Tensor, "n_layers d_model"]
    mean_base_rejected: Float[torch.Tensor, "n_layers d_model"]
    mean_instruct_rejected: Float[torch.Tensor, "n_layers d_model"]
    n_tokens_chosen: int
    n_tokens_rejected: int

    @property
    def delta_chosen(self) -> Float[torch.Tensor, "n_layers d_model"]:
        """``instruct - base`` mean state on the chosen texts."""
        return self.mean_instruct_chosen - self.mean_base_chosen

    @property
    def delta_rejected(self) -> Float[torch.Tensor, "n_layers d_model"]:
        """``instruct - base`` mean state on the rejected texts."""
        return self.mean_instruct_rejected - self.mean_base_rejected

    @property
    def cosine_chosen(self) -> Float[torch.Tensor, " n_layers"]:
        """Cosine similarity of the two models' mean states on the chosen texts."""
        return torch.nn.functional.cosine_similarity(self.mean_base_chosen, self.mean_instruct_chosen, dim=-1)

    @property
    def cosine_rejected(self) -> Float[torch.Tensor, " n_layers"]:
        """Cosine similarity of the two models' mean states on the rejected texts."""
        return torch.nn.functional.cosine_similarity(self.mean_base_rejected, self.mean_instruct_rejected, dim=-1)

    def norms(self) -> dict[str, Float[torch.Tensor, " n_layers"]]:
        """Per-layer norms of every mean and delta."""
        return {"base_chosen": self.mean_base_chosen.norm(dim=-1), "instruct_chosen": self.mean_instruct_chosen.norm(dim=-1),
                "base_rejected": self.mean_base_rejected.norm(dim=-1),
                "instruct_rejected": self.mean_instruct_rejected.norm(dim=-1),
                "delta_chosen": self.delta_chosen.norm(dim=-1), "delta_rejected": self.delta_rejected.norm(dim=-1)}

    def to_json(self) -> dict[str, Any]:
        """Per-layer curves (cosines and norms), JSON-ready."""
        return {"layers": list(self.layers), "component": self.component, "n_tokens_chosen": self.n_tokens_chosen,
                "n_tokens_rejected": self.n_tokens_rejected, "cosine_chosen": self.cosine_chosen.tolist(),
                "cosine_rejected": self.cosine_rejected.tolist(), "norms": {k: v.tolist() for k, v in self.norms().items()}}


def check_shared_tokenizer(base: LoadedModel, instruct: LoadedModel) -> None:
    """Both models must share vocabulary and residual shape.

    Raises:
        InputError: different vocabularies, layer counts or widths.
    """
    if base.tokenizer.get_vocab() != instruct.tokenizer.get_vocab():
        raise InputError(f"{base.name} and {instruct.name} do not share a tokenizer vocabulary", field="models")
    if (base.n_layers, base.d_model) != (instruct.n_layers, instruct.d_model):
        raise InputError(f"shapes differ: {base.name} has {base.n_layers} layers x {base.d_model}, "
                         f"{instruct.name} has {instruct.n_layers} x {instruct.d_model}", field="models")


def model_deltas(
    base: LoadedModel,
    instruct: LoadedModel,
    chosen: Sequence[str],
    rejected: Sequence[str],
    *,
    component: str = "resid_post",
    layers: Sequence[int] | None = None,
    chat: bool = False,
    batch_size: int = 8,
    progress: bool = False,
) -> ModelDeltas:
    """Mean hidden states of both models on both text sets, per layer (see the module docstring).

    Args:
        base: the base model.
        instruct: the tuned model (same tokenizer and shape).
        chosen: preferred texts (e.g. HH-RLHF ``chosen``).
        rejected: dispreferred texts.
        component: site component (default ``resid_post``).
        layers: layers to read (default all).
        chat: chat-format the texts (default: raw, as transcripts already carry their turns).
        batch_size: texts per forward pass.
        progress: progress bars on stderr.
    """
    check_shared_tokenizer(base, instruct)
    kw: dict[str, Any] = {"component": component, "layers": layers, "chat": chat, "batch_size": batch_size, "progress": progress}
    bc, n_c = mean_states(base, chosen, **kw)
    ic, _ = mean_states(instruct, chosen, **kw)
    br, n_r = mean_states(base, rejected, **kw)
    ir, _ = mean_states(instruct, rejected, **kw)
    names = tuple(range(base.n_layers)) if layers is None else tuple(dict.fromkeys(layers))
    return ModelDeltas(names, component, bc, ic, br, ir, n_c, n_r)
