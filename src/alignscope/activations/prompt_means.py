"""Per-prompt mean hidden states (mean over each text's real tokens, every layer), cached on disk.

:func:`prompt_means` runs the forward passes; :func:`cached_prompt_means` keeps the result in a
safetensors file under a cache directory, named by the hash of what it depends on: the model's
:func:`~alignscope.models.identity.model_identity` key (weights and dtype; plus anything the caller
adds, e.g. the hash of an intervention active during the passes), the texts, the component, the
layers and the chat flag. A rerun with the same inputs reads the file and runs no forward pass.

Example:
    >>> pm = cached_prompt_means(lm, ["a text", "another"], cache_dir="out/cache")   # doctest: +SKIP
    >>> pm.means.shape, pm.token_mean().shape                                        # doctest: +SKIP
    (torch.Size([2, 30, 576]), torch.Size([30, 576]))
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from alignscope.activations.capture import CapturePlan, batches, capture_batch
from alignscope.errors import InputError
from alignscope.io import read_safetensors, save_safetensors, sha256_json
from alignscope.models.chat import encode_one
from alignscope.models.identity import model_identity
from alignscope.models.loader import LoadedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class PromptMeans:
    """Mean activation of each text over its real tokens, per layer.

    Attributes:
        means: ``(n_texts, n_layers, d_model)`` float32.
        counts: ``(n_texts,)`` real tokens of each text.
        layers: the layers of the second axis.
        component: the site component read.
    """

    means: Float[torch.Tensor, "n n_layers d_model"]
    counts: torch.Tensor
    layers: tuple[int, ...]
    component: str

    def token_mean(self) -> Float[torch.Tensor, "n_layers d_model"]:
        """The mean over every token of every text (each text weighted by its token count)."""
        weights = self.counts.double()
        return ((self.means.double() * weights[:, None, None]).sum(0) / weights.sum()).float()

    @property
    def n_tokens(self) -> int:
        """Real tokens over all texts."""
        return int(self.counts.sum())


def prompt_means(
    lm: LoadedModel, texts: Sequence[str], *, component: str = "resid_post", layers: Sequence[int] | None = None,
    chat: bool = False, batch_size: int = 8, progress: bool = False,
) -> PromptMeans:
    """Run ``texts`` through ``lm`` and average each text's activations over its tokens (see the module docstring).

    Hooks already attached to ``lm`` (an intervention in a ``with iv.apply(lm)`` block) act on the passes.

    Raises:
        InputError: no texts, or a component or layer the model lacks.
    """
    if not texts:
        raise InputError("no texts given", field="texts")
    encoded = [encode_one(lm.tokenizer, t, chat=chat) for t in texts]
    plan = CapturePlan.build(lm, [component], layers, "all")
    pad = int(lm.tokenizer.pad_token_id or 0)
    rows: list[torch.Tensor] = []
    counts: list[int] = []
    for batch in tqdm(batches([e[0] for e in encoded], [e[1] for e in encoded], batch_size, pad),
                      desc="prompt means", disable=not progress, leave=False):
        acts = capture_batch(lm, batch, plan)[component].double()  # (n_tokens, L, d), prompt by prompt
        for chunk in acts.split(batch.lengths):
            rows.append(chunk.mean(0).float())
            counts.append(chunk.shape[0])
    return PromptMeans(torch.stack(rows), torch.tensor(counts, dtype=torch.int64), plan.layers, component)


def cache_key(lm: LoadedModel, texts: Sequence[str], *, component: str, layers: Sequence[int] | None, chat: bool,
              extra: Mapping[str, Any] | None = None) -> str:
    """The file stem a cached result is stored under (see the module docstring)."""
    chosen = list(range(lm.n_layers)) if layers is None else list(dict.fromkeys(layers))
    return sha256_json({"model": model_identity(lm).key(), "extra": dict(extra or {}), "texts": sha256_json(list(texts)),
                        "component": component, "layers": chosen, "chat": chat})[:32]


def cached_prompt_means(
    lm: LoadedModel, texts: Sequence[str], *, cache_dir: str | Path, component: str = "resid_post",
    layers: Sequence[int] | None = None, chat: bool = False, batch_size: int = 8, progress: bool = False,
    extra_key: Mapping[str, Any] | None = None,
) -> PromptMeans:
    """:func:`prompt_means`, read from ``cache_dir`` when the same inputs were run before, else run and stored.

    Args:
        extra_key: what else the passes depend on (e.g. ``{"intervention": sha256}``); part of the key.
    """
    key = cache_key(lm, texts, component=component, layers=layers, chat=chat, extra=extra_key)
    path = Path(cache_dir) / f"prompt_means-{key}.safetensors"
    if path.is_file():
        tensors, meta = read_safetensors(path, "hidden-state cache")
        log.info("hidden states of %d texts read from %s", len(texts), path)
        return PromptMeans(tensors["means"], tensors["counts"], tuple(int(x) for x in meta["layers"].split(",")),
                           meta["component"])
    result = prompt_means(lm, texts, component=component, layers=layers, chat=chat, batch_size=batch_size, progress=progress)
    save_safetensors(path, {"means": result.means.contiguous(), "counts": result.counts},
                     {"layers": ",".join(str(x) for x in result.layers), "component": component, "model": lm.name})
    return result
