"""On-disk activation store: one ``activations.safetensors`` plus ``index.json`` per run.

While capturing, each finished batch is written atomically to ``.parts/`` beside a
fingerprint of the inputs (the model's :func:`~alignscope.models.identity.resume_key`, i.e.
its weights hash and dtype, not its name; prompts, sites, positions, chat, batch size), kept
as :mod:`alignscope.resume` does. A rerun with the same inputs skips finished batches; a rerun
with different inputs stops with a ``ResumeMismatchError`` rather than mixing runs. At the end
the parts are streamed into one safetensors file (one part in memory at a time) and removed.

``index.json`` holds: ``format_version``, ``model`` (the name), ``model_type``, ``n_layers``,
``d_model``, ``dtype``, ``weights_sha256``, ``components``, ``layers``, ``positions``,
``layout`` (``single``, ``multi`` or ``all``), ``offsets_from_end`` (for single/multi), ``chat``, ``prompts`` (records),
``token_ids``, ``tokens`` (strings), ``n_post``, ``shapes``, ``fingerprint``, ``seconds``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from tqdm.auto import tqdm

from alignscope import __version__
from alignscope.activations.capture import CapturePlan, batches, capture_batch
from alignscope.activations.positions import PositionSpec
from alignscope.data.prompts import PromptSet
from alignscope.errors import InputError
from alignscope.io import atomic_write_json, save_safetensors, sha256_json, write_safetensors_streaming
from alignscope.models.chat import encode_one
from alignscope.models.identity import model_identity
from alignscope.models.loader import LoadedModel
from alignscope.resume import claim, same_run

log = logging.getLogger(__name__)

ACTIVATIONS_FILE = "activations.safetensors"
INDEX_FILE = "index.json"
PARTS_DIR = ".parts"
INPUTS = "model weights or dtype, prompts, sites, positions, chat or batch size"
FORMAT_VERSION = 1


@dataclass
class CaptureResult:
    """Captured activations and their index (see the module docstring for the layout)."""

    activations: dict[str, torch.Tensor]
    index: dict[str, Any]

    def __getitem__(self, component: str) -> torch.Tensor:
        return self.activations[component]


def capture(
    lm: LoadedModel,
    prompts: PromptSet | Sequence[str],
    components: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    positions: str | PositionSpec = "last",
    chat: bool = True,
    batch_size: int = 16,
    out_dir: str | Path | None = None,
    progress: bool = False,
) -> CaptureResult:
    """Capture activations of ``components`` at ``layers`` and ``positions`` for every prompt.

    Args:
        lm: the loaded model.
        prompts: a :class:`PromptSet` or plain strings.
        components: site components such as ``resid_post`` (see :mod:`alignscope.sites`).
        layers: layers to read (all by default).
        positions: ``last``, ``all``, ``post`` or indices from the end, e.g. ``-1,-2``.
        chat: format with the chat template (True) or tokenise raw text exactly as ``tokenizer(text)``.
        batch_size: prompts per forward pass.
        out_dir: when given, write ``activations.safetensors`` and ``index.json`` there,
            resuming from finished batches of an interrupted run.
        progress: show a progress bar on stderr.

    Returns:
        A :class:`CaptureResult`. With ``out_dir``, its tensors are loaded back from disk.

    Example:
        >>> res = capture(lm, ["Hi", "How do I bake bread?"], ["resid_post"])   # doctest: +SKIP
        >>> res["resid_post"].shape                                              # doctest: +SKIP
        torch.Size([2, 30, 576])
    """
    pset = prompts if isinstance(prompts, PromptSet) else PromptSet.from_texts(prompts)
    if len(pset) == 0:
        raise InputError("no prompts to capture", field="prompts")
    encoded = [encode_one(lm.tokenizer, p, chat=chat) for p in pset.texts]
    token_ids = [e[0] for e in encoded]
    n_post = [e[1] for e in encoded]
    plan = CapturePlan.build(lm, components, layers, positions, key_len=max(len(t) for t in token_ids))
    index = _index(lm, pset, plan, chat, token_ids, n_post, batch_size)
    pad_id = int(lm.tokenizer.pad_token_id or 0)
    todo = batches(token_ids, n_post, batch_size, pad_id)
    start = time.perf_counter()
    if out_dir is None:
        parts = [capture_batch(lm, b, plan) for b in tqdm(todo, desc="capture", unit="batch", disable=not progress)]
        acts = {c: torch.cat([p[c] for p in parts]) for c in plan.components}
        _add_offsets(acts, plan, token_ids)
        index["shapes"] = {k: list(v.shape) for k, v in acts.items()}
        index["seconds"] = time.perf_counter() - start
        return CaptureResult(acts, index)
    return _capture_to_disk(lm, plan, todo, index, token_ids, Path(out_dir), progress, start)


def _capture_to_disk(lm: LoadedModel, plan: CapturePlan, todo: list[Any], index: dict[str, Any],
                     token_ids: list[list[int]], out: Path, progress: bool, start: float) -> CaptureResult:
    final = out / ACTIVATIONS_FILE
    if final.is_file() and (out / INDEX_FILE).is_file():
        old = json.loads((out / INDEX_FILE).read_text(encoding="utf-8"))
        if same_run(old.get("fingerprint", ""), index["fingerprint"], where=out, what="a finished capture", inputs=INPUTS):
            log.info("capture already complete in %s; loading it", out)
            return load_capture(out)
    parts_dir = out / PARTS_DIR
    claim(parts_dir, index["fingerprint"], what="an unfinished capture", inputs=INPUTS)
    done = sum(1 for i in range(len(todo)) if _part(parts_dir, i).is_file())
    if done:
        log.info("resuming capture: %d of %d batches already done", done, len(todo))
    for i, batch in enumerate(tqdm(todo, desc="capture", unit="batch", disable=not progress)):
        if not _part(parts_dir, i).is_file():
            save_safetensors(_part(parts_dir, i), capture_batch(lm, batch, plan))
    specs, chunks = _merge_plan(parts_dir, len(todo), plan, token_ids)
    index["shapes"] = {k: list(v[1]) for k, v in specs.items()}
    index["seconds"] = time.perf_counter() - start
    write_safetensors_streaming(final, specs, chunks, metadata={"fingerprint": index["fingerprint"]})
    atomic_write_json(out / INDEX_FILE, index)
    shutil.rmtree(parts_dir, ignore_errors=True)
    return load_capture(out)


def load_capture(out_dir: str | Path) -> CaptureResult:
    """Load a finished capture written by :func:`capture` with ``out_dir``."""
    out = Path(out_dir)
    for name in (ACTIVATIONS_FILE, INDEX_FILE):
        if not (out / name).is_file():
            raise InputError(f"not a finished capture: {name} is missing", path=out)
    index = json.loads((out / INDEX_FILE).read_text(encoding="utf-8"))
    return CaptureResult(load_file(str(out / ACTIVATIONS_FILE)), index)


def _index(lm: LoadedModel, pset: PromptSet, plan: CapturePlan, chat: bool, token_ids: list[list[int]],
           n_post: list[int], batch_size: int) -> dict[str, Any]:
    spec = plan.positions
    layout = "all" if spec.kind == "all" else ("single" if spec.single else "multi")
    offsets = None if spec.kind == "all" else spec.offsets_from_end([len(t) for t in token_ids], n_post)
    model = model_identity(lm)
    inputs = {
        "components": list(plan.components), "layers": list(plan.layers), "positions": str(spec),
        "chat": chat, "prompts_sha256": pset.content_hash(), "batch_size": batch_size,
    }
    return {
        "format_version": FORMAT_VERSION, "alignscope_version": __version__,
        "model": model.name, "model_type": model.model_type, "n_layers": model.n_layers, "d_model": model.d_model,
        "dtype": model.dtype, "weights_sha256": model.weights_sha256, **inputs,
        "layout": layout, "offsets_from_end": offsets, "n_prompts": len(pset), "prompts": pset.records(),
        "token_ids": token_ids, "tokens": [lm.tokenizer.convert_ids_to_tokens(t) for t in token_ids],
        "n_post": n_post, "fingerprint": sha256_json({"model": model.key(), **inputs}),
    }


def _add_offsets(acts: dict[str, torch.Tensor], plan: CapturePlan, token_ids: list[list[int]]) -> None:
    if plan.positions.kind == "all":
        acts["offsets"] = torch.tensor([0] + [len(t) for t in token_ids]).cumsum(0)


def _part(parts_dir: Path, i: int) -> Path:
    return parts_dir / f"batch_{i:06d}.safetensors"


def _merge_plan(parts_dir: Path, n_parts: int, plan: CapturePlan, token_ids: list[list[int]]
                ) -> tuple[dict[str, tuple[torch.dtype, tuple[int, ...]]], dict[str, Iterator[torch.Tensor]]]:
    specs: dict[str, tuple[torch.dtype, tuple[int, ...]]] = {}
    for comp in plan.components:
        rows, tail = 0, ()
        for i in range(n_parts):
            with safe_open(str(_part(parts_dir, i)), framework="pt") as fh:
                shape = tuple(fh.get_slice(comp).get_shape())
            rows, tail = rows + shape[0], shape[1:]
        specs[comp] = (torch.float32, (rows, *tail))

    def stream(comp: str) -> Iterator[torch.Tensor]:
        for i in range(n_parts):
            with safe_open(str(_part(parts_dir, i)), framework="pt") as fh:
                yield fh.get_tensor(comp)

    chunks: dict[str, Iterator[torch.Tensor]] = {comp: stream(comp) for comp in plan.components}
    if plan.positions.kind == "all":
        offsets = torch.tensor([0] + [len(t) for t in token_ids]).cumsum(0)
        specs["offsets"] = (torch.int64, tuple(offsets.shape))
        chunks["offsets"] = iter([offsets])
    return specs, chunks
