"""Files of one base-vs-aligned comparison: the deltas safetensors, the JSON summary and the per-layer plots.

Written by ``alignscope deltas`` into ``--out`` and by a sweep into ``models/KEY/deltas/``:

* ``deltas.safetensors``: :func:`~alignscope.steering.delta_io.save_deltas` (readable as a direction file);
* ``cosine.png``: the two models' cosine similarity per layer, chosen and rejected texts;
* ``delta_norm.png``: the norm of the mean delta per layer, chosen and rejected texts;
* ``explained_variance.png``: the fraction each SVD component of the per-text differences explains, per layer;
* ``deltas.json`` (``alignscope deltas`` only; a sweep keeps the summary in ``result.json``): the ``--json`` object.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alignscope.io import atomic_write_json
from alignscope.reports.plots import lines_png
from alignscope.steering.delta_io import save_deltas
from alignscope.steering.deltas import ModelDeltas

FILES = ("deltas.safetensors", "cosine.png", "delta_norm.png", "explained_variance.png")


def write_deltas_files(out_dir: str | Path, deltas: ModelDeltas, *, base: str, aligned: str, data_sha256: str) -> list[Path]:
    """Write :data:`FILES` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layers = list(deltas.layers)
    norms = deltas.norms()
    title = f"{aligned} vs {base}"
    written = [save_deltas(out / FILES[0], deltas, base=base, aligned=aligned, data_sha256=data_sha256),
               lines_png(out / FILES[1], {"chosen": deltas.cosine_chosen.tolist(), "rejected": deltas.cosine_rejected.tolist()},
                         x=layers, title=f"cosine similarity of mean states: {title}", xlabel="layer", ylabel="cosine"),
               lines_png(out / FILES[2], {"chosen": norms["delta_chosen"].tolist(), "rejected": norms["delta_rejected"].tolist()},
                         x=layers, title=f"norm of the mean delta: {title}", xlabel="layer", ylabel="|aligned - base|")]
    if deltas.svd is not None:
        ev = deltas.svd.explained_variance
        series = {f"component {k}": ev[:, k].tolist() for k in range(ev.shape[1])}
        written.append(lines_png(out / FILES[3], series, x=layers, title=f"explained variance of per-text deltas: {title}",
                                 xlabel="layer", ylabel="fraction"))
    return written


def write_deltas_summary(out_dir: str | Path, payload: Mapping[str, Any]) -> Path:
    """``deltas.json``: the ``alignscope deltas --json`` object."""
    target = Path(out_dir) / "deltas.json"
    atomic_write_json(target, dict(payload))
    return target
