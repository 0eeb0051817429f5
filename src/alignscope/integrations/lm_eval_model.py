"""lm-evaluation-harness model type ``alignscope``: a loaded model with an intervention active (extra ``lmeval``).

::

    lm_eval --model alignscope --model_args pretrained=default,intervention=iv.safetensors --tasks truthfulqa_mc2

``pretrained`` is what ``--model`` takes everywhere in alignscope (``default`` for the embedded model, a hub
id or a local directory); ``intervention`` is any intervention file (addition, ablation, clamp, conditional,
mac), read and checked against the model as ``--intervention`` is (an intervention built for another model
is an error naming both); ``dtype`` and ``device`` as in the CLI (lm-eval's default ``cuda:0`` falls back to
``auto`` where CUDA is absent, as HFLM does); ``batch_size`` from lm-eval.

* ``loglikelihood``: :func:`alignscope.evals.loglik.scored_logliks` on HFLM's encoding (``_encode_pair``;
  an empty context is the BOS/EOS prefix token), so TruthfulQA MC through lm-eval equals
  :mod:`alignscope.evals.truthfulqa`. A sequence longer than the model's context keeps its last tokens.
* ``loglikelihood_rolling``: lm-eval's disjoint rolling windows of the model's context length, summed.
* ``generate_until``: greedy generation of raw text (no chat template) with the KV cache, cut at the first
  ``until`` string; ``max_gen_toks`` (default 256). Sampling is not supported (greedy always).

Every call runs in batches with the intervention attached for the whole call.

lm-eval 0.4.13 has no plugin discovery: its registry knows only the models it lists itself. Importing this
module registers ``alignscope`` (``lm_eval.api.registry.register_model``);
:mod:`alignscope.integrations.lm_eval_hook` makes the ``lm_eval`` command do that import (see there).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm.auto import tqdm

from alignscope.cli.common import fit_intervention, read_intervention
from alignscope.evals.generation import generate
from alignscope.evals.loglik import encode_pair, prefix_id, scored_logliks
from alignscope.models.loader import LoadedModel, load_model
from alignscope.steering.interventions import Intervention

DEFAULT_MAX_GEN_TOKS = 256
log = logging.getLogger(__name__)


def _batch_size(value: Any) -> int:
    """lm-eval passes ``batch_size`` as an int, a digit string or ``auto``/``auto:N`` (taken as 8)."""
    text = str(value if value is not None else 8)
    return int(text) if text.isdigit() and int(text) > 0 else 8


def _device(device: str | None) -> str:
    """lm-eval's device; its default ``cuda:0`` falls back to ``auto`` where CUDA is absent, as lm-eval's HFLM falls back."""
    if not device:
        return "auto"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        log.warning("device %s asked for but CUDA is not available; using auto", device)
        return "auto"
    return str(device)


@register_model("alignscope")
class AlignscopeLM(LM):  # type: ignore[misc]
    """An alignscope :class:`~alignscope.models.loader.LoadedModel` (and optional intervention) as an lm-eval ``LM``."""

    def __init__(self, pretrained: str = "default", intervention: str | None = None, dtype: str = "auto", device: str = "auto",
                 batch_size: Any = 8, max_length: Any = None, lm: LoadedModel | None = None, **_: Any) -> None:
        super().__init__()
        path = Path(intervention) if intervention else None
        iv = read_intervention(path)
        self.lm = lm if lm is not None else load_model(pretrained, dtype=dtype, device=_device(device))
        fit_intervention(iv, self.lm, path)
        self.intervention: Intervention | None = iv
        self.batch_size = _batch_size(batch_size)
        limit = getattr(self.lm.tokenizer, "model_max_length", None)
        configured = getattr(self.lm.hf_model.config, "max_position_embeddings", None)
        self.max_length = int(max_length) if max_length else int(configured or limit or 2048)

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.lm.tokenizer, "name_or_path", self.lm.name)).replace("/", "__")

    def _encode(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        if context == "":
            return [prefix_id(self.lm.tokenizer)], list(self.lm.tokenizer(continuation, add_special_tokens=False)["input_ids"])
        return encode_pair(self.lm.tokenizer, context, continuation)

    def _fit(self, context: Sequence[int], continuation: Sequence[int]) -> tuple[list[int], list[int]]:
        """Keep the last ``max_length`` tokens (the continuation's whole, and as much context as fits)."""
        keep = max(1, self.max_length - len(continuation))
        return list(context)[-keep:], list(continuation)

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        encoded = [self._fit(*self._encode(*req.args)) for req in requests]
        return scored_logliks(self.lm, encoded, self.intervention, batch_size=self.batch_size, progress=not disable_tqdm,
                              desc="lm-eval loglikelihood")

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        windows: list[tuple[list[int], list[int]]] = []
        owner: list[int] = []
        for i, req in enumerate(requests):
            tokens = list(self.lm.tokenizer(req.args[0], add_special_tokens=False)["input_ids"])
            for window in get_rolling_token_windows(tokens, prefix_id(self.lm.tokenizer), self.max_length, 1):
                windows.append(make_disjoint_window(window))
                owner.append(i)
        scores = scored_logliks(self.lm, windows, self.intervention, batch_size=self.batch_size, progress=not disable_tqdm,
                                desc="lm-eval rolling")
        out = [0.0] * len(requests)
        for i, (ll, _) in zip(owner, scores, strict=True):
            out[i] += ll
        return out

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        groups: dict[tuple[int, tuple[str, ...]], list[int]] = {}
        for i, req in enumerate(requests):
            kwargs = dict(req.args[1]) if len(req.args) > 1 and req.args[1] else {}
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            groups.setdefault((int(kwargs.get("max_gen_toks", DEFAULT_MAX_GEN_TOKS)), tuple(until)), []).append(i)
        out = [""] * len(requests)
        for (max_tokens, until), idx in tqdm(groups.items(), desc="lm-eval generate", disable=disable_tqdm):
            texts = generate(self.lm, [requests[i].args[0] for i in idx], chat=False, max_new_tokens=max_tokens,
                             batch_size=self.batch_size, intervention=self.intervention)
            for i, text in zip(idx, texts, strict=True):
                out[i] = cut_at_stops(text, until)
        return out


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    """``text`` up to the earliest occurrence of any non-empty stop string."""
    cut = min((text.find(s) for s in stops if s and s in text), default=len(text))
    return text[:cut]
