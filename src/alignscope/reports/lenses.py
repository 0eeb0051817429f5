"""Lens results written as JSON and PNG: ``dla``, ``lens``, ``tuned-lens train`` and ``tuned-lens eval``.

Files (every one written atomically):

* DLA: ``dla.json`` (the command's payload), ``dla_layers.png`` (attention and MLP by layer),
  ``attn_mlp_ratio.png``, and with heads ``dla_heads.png``.
* Logit or tuned lens: ``lens.json`` (the payload), and with tracked tokens ``lens_tracked_logits.png``
  and ``lens_tracked_ranks.png``.
* Tuned-lens training: ``train_summary.json``; evaluation: ``lens_eval.json`` and ``lens_eval.png``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alignscope.io import atomic_write_json
from alignscope.lenses.dla import DLAResult
from alignscope.lenses.lens_eval import LensEval
from alignscope.lenses.logit_lens import LensResult
from alignscope.reports.plots import heatmap_png, lines_png


def write_dla_outputs(out: Path, model: str, res: DLAResult, payload: Mapping[str, Any], *, by_head: bool) -> list[Path]:
    """Write ``dla.json`` (``payload``) and the DLA plots under ``out``; return the paths."""
    files = [out / "dla.json"]
    atomic_write_json(files[0], payload)
    files.append(heatmap_png(out / "dla_layers.png", [res.attn.tolist(), res.mlp.tolist()], title=f"{model}: DLA by layer",
                             xlabel="layer", ylabel="", yticklabels=["attn", "mlp"], colorbar_label="logit difference"))
    files.append(lines_png(out / "attn_mlp_ratio.png", {"|attn| / (|attn|+|mlp|)": res.attn_mlp_ratio()},
                           title=f"{model}: attention share of each layer's DLA", xlabel="layer", ylabel="attention share"))
    if by_head:
        files.append(heatmap_png(out / "dla_heads.png", res.heads.tolist(), title=f"{model}: DLA by head",
                                 xlabel="head", ylabel="layer", colorbar_label="logit difference"))
    return files


def write_lens_outputs(out: Path, model: str, res: LensResult, payload: Mapping[str, Any]) -> list[Path]:
    """Write ``lens.json`` (``payload``) and, with tracked tokens, their logit and rank plots; return the paths."""
    files = [out / "lens.json"]
    atomic_write_json(files[0], payload)
    trajectories = payload["trajectories"]
    if trajectories:
        files.append(lines_png(out / "lens_tracked_logits.png", {t: v["logit"] for t, v in trajectories.items()},
                               title=f"{model}: {res.kind} lens logits of tracked tokens", xlabel="layer", ylabel="logit"))
        files.append(lines_png(out / "lens_tracked_ranks.png", {t: v["rank"] for t, v in trajectories.items()},
                               title=f"{model}: {res.kind} lens rank of tracked tokens (0 = top)", xlabel="layer", ylabel="rank"))
    return files


def write_lens_eval_outputs(out: Path, model: str, ev: LensEval, payload: Mapping[str, Any]) -> list[Path]:
    """Write ``lens_eval.json`` (``payload``) and ``lens_eval.png`` (KL per layer of both lenses); return the paths."""
    files = [out / "lens_eval.json"]
    atomic_write_json(files[0], payload)
    files.append(lines_png(out / "lens_eval.png", {"logit lens": ev.kl_logit_lens, "tuned lens": ev.kl_tuned_lens or []},
                           title=f"{model}: KL to the final distribution", xlabel="layer", ylabel="KL (nats)"))
    return files


def write_train_summary(out: Path, payload: Mapping[str, Any]) -> Path:
    """Write ``train_summary.json`` (``payload``) under ``out``; return its path."""
    path = out / "train_summary.json"
    atomic_write_json(path, payload)
    return path
