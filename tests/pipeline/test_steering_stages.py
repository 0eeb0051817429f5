from __future__ import annotations

import pytest
import torch

from alignscope.errors import InputError
from alignscope.pipeline.steering_stages import mean_diff_from
from alignscope.pipeline.store import StageRecord


def test_mean_diff_subset() -> None:
    dirs = torch.arange(3 * 5 * 4, dtype=torch.float32).reshape(3, 5, 4)
    rec = StageRecord("extract", "fp", {"positions": [-3, -2, -1], "layers": [0, 1, 2, 3, 4], "component": "resid_pre",
                                        "n_pos": 2, "n_neg": 2}, {"directions": dirs, "mean_pos": dirs + 1, "mean_neg": dirs - 1})
    md = mean_diff_from(rec, [-1, -3], layer_stride=2)
    assert md.positions == (-1, -3) and md.layers == (0, 2, 4)
    assert torch.equal(md.direction(2, -3), dirs[0, 2]) and torch.equal(md.direction(4, -1), dirs[2, 4])
    assert torch.equal(md.mean_pos[1, 1], dirs[0, 2] + 1)
    assert mean_diff_from(rec).directions.shape == (3, 5, 4)
    with pytest.raises(InputError, match=r"select.positions.*\[-3, -2, -1\]"):
        mean_diff_from(rec, [-5])
