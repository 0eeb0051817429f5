"""Deltas files: a base-vs-aligned comparison as safetensors, also readable as a direction file.

Tensors: ``direction`` (the chosen texts' delta at the peak layer, so
:func:`~alignscope.steering.direction_io.load_direction` reads the file as a steering vector),
``delta_chosen`` and ``delta_rejected`` ``(n_layers, d_model)``, ``svd_component`` ``(n_layers,
d_model)`` (SVD component ``svd_k`` per layer), ``explained_variance`` ``(n_layers, k)``,
``cosine_chosen``/``cosine_rejected`` ``(n_layers,)``. Metadata (strings): the direction file's
``model`` (the aligned model), ``layer`` (the peak layer), ``position`` (``all``), ``method``
(``base_vs_aligned_delta``), ``data_sha256``, plus ``base``, ``aligned``, ``component``,
``svd_k``, ``layers`` (JSON list) and ``format``.

Example:
    >>> save_deltas("deltas.safetensors", d, base="smol", aligned="smol-steered", data_sha256=sha)  # doctest: +SKIP
    >>> load_direction("deltas.safetensors").layer == d.peak_layer                                  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
from pathlib import Path

from alignscope.io import save_safetensors
from alignscope.steering.deltas import ModelDeltas

FORMAT = "alignscope.deltas/1"
METHOD = "base_vs_aligned_delta"


def save_deltas(path: str | Path, deltas: ModelDeltas, *, base: str, aligned: str, data_sha256: str) -> Path:
    """Write ``deltas`` atomically (see the module docstring); returns the file."""
    peak = deltas.layers.index(deltas.peak_layer)
    tensors = {"direction": deltas.delta_chosen[peak], "delta_chosen": deltas.delta_chosen,
               "delta_rejected": deltas.delta_rejected, "cosine_chosen": deltas.cosine_chosen,
               "cosine_rejected": deltas.cosine_rejected}
    if deltas.svd is not None:
        tensors["svd_component"] = deltas.svd_vectors()
        tensors["explained_variance"] = deltas.svd.explained_variance
    meta = {"model": aligned, "layer": str(deltas.peak_layer), "position": "all", "method": METHOD,
            "data_sha256": data_sha256, "base": base, "aligned": aligned, "component": deltas.component,
            "svd_k": str(deltas.svd_k), "layers": json.dumps(list(deltas.layers)), "format": FORMAT,
            "norm": f"{float(deltas.delta_chosen[peak].norm()):.6g}"}
    target = Path(path)
    save_safetensors(target, {k: v.detach().float().contiguous() for k, v in tensors.items()}, meta)
    return target
