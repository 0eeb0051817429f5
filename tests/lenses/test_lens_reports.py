"""reports.lenses writes the lens commands' files: the JSON is the payload, the PNGs exist, the paths are returned."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from alignscope.lenses.dla import DLAResult
from alignscope.lenses.lens_eval import LensEval
from alignscope.lenses.logit_lens import LensResult
from alignscope.reports.lenses import write_dla_outputs, write_lens_eval_outputs, write_lens_outputs, write_train_summary


def _read(path: Path) -> object:
    return json.loads(path.read_text(encoding="utf-8"))


def _dla() -> DLAResult:
    return DLAResult(logit_diff=1.0, embed=0.5, attn=torch.tensor([0.25, -0.5]), mlp=torch.tensor([0.5, 0.25]),
                     heads=torch.zeros(2, 3), head_bias=torch.zeros(2), remainder=0.0, answer_id=1, foil_id=2)


def test_dla_files(tmp_path: Path) -> None:
    payload = {"model": "m", "logit_diff": 1.0, "components": [{"component": "embed", "value": 0.5}]}
    files = write_dla_outputs(tmp_path, "m", _dla(), payload, by_head=False)
    assert files == [tmp_path / n for n in ("dla.json", "dla_layers.png", "attn_mlp_ratio.png")]
    assert _read(files[0]) == payload
    assert (tmp_path / "dla.json").read_text(encoding="utf-8") == json.dumps(payload, indent=2) + "\n"
    with_heads = write_dla_outputs(tmp_path / "h", "m", _dla(), payload, by_head=True)
    assert [p.name for p in with_heads][-1] == "dla_heads.png" and all(p.stat().st_size > 0 for p in with_heads)


def test_lens_files_plot_only_tracked_tokens(tmp_path: Path) -> None:
    res = LensResult(kind="logit", position=-1, tokens=[], layers=[])
    plain = {"trajectories": {}, "kind": "logit"}
    assert write_lens_outputs(tmp_path / "a", "m", res, plain) == [tmp_path / "a" / "lens.json"]
    assert _read(tmp_path / "a" / "lens.json") == plain
    tracked = {"trajectories": {" x": {"logit": [1.0, 2.0], "rank": [3, 0]}}}
    names = [p.name for p in write_lens_outputs(tmp_path / "b", "m", res, tracked)]
    assert names == ["lens.json", "lens_tracked_logits.png", "lens_tracked_ranks.png"]


def test_lens_eval_and_train_summary(tmp_path: Path) -> None:
    ev = LensEval(kl_logit_lens=[2.0, 1.0, 0.0], kl_tuned_lens=[1.0, 0.5, 0.0], n_tokens=4)
    payload = {"model": "m", **ev.to_json()}
    files = write_lens_eval_outputs(tmp_path, "m", ev, payload)
    assert [p.name for p in files] == ["lens_eval.json", "lens_eval.png"]
    assert _read(files[0]) == {**payload, "ratio": 0.5, "ratio_without_layer0": 0.5}
    summary = {"model": "m", "losses": [0.5, 0.25]}
    assert write_train_summary(tmp_path, summary) == tmp_path / "train_summary.json"
    assert _read(tmp_path / "train_summary.json") == summary
