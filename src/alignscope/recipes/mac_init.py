"""Starting values of the alignment circuit: sensors from contrastive directions, and optionally a gate that is a fitted probe.

``gate_init: probe`` starts the decision of one axis (``gate_axis``, ``harmless`` by default) as a
classifier of the prompt, instead of leaving it to be found through the nudge's gradient:

- the axis' sensor and bias are an L2-regularised logistic probe
  (:func:`~alignscope.steering.probes.fit_logistic_probe`) on the RMS-normalised states at the
  circuit's layer (what the sensors read), averaged over every real token of the chat-formatted
  prompt: the prompts that should be refused against the others, each negative group weighted
  equally (harmless and lookalike prompts, so that the hard negatives count as much as the easy ones);
- the decision's query starts at zero, so its attention is uniform over the real tokens so far, and
  at the last prompt token the axis' context is exactly the probe's logit;
- the axis' decision row reads that context with weight ``scale`` (1 by default) and bias ``-scale * margin``
  (``margin`` 0 by default), so its gate starts as the probe's probability, sharpened by ``scale`` and moved
  ``margin`` logits towards the harmful side: ``sigmoid(scale * (probe logit - margin))``. A gate that
  is nearer 0 or 1 lets less of the nudge through on prompts the probe is unsure of. The other axes keep
  a fresh circuit's values.

The nudges still start at zero, so the model is unchanged until training moves them.

Example:
    >>> init = probe_gate_init(lm, 15, harmful, [harmless, lookalike], axes, gate_index=1)  # doctest: +SKIP
    >>> train(model, tok, examples, settings, out_dir="out", init=init)                       # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from alignscope.errors import InputError
from alignscope.models.loader import LoadedModel
from alignscope.steering.circuit import CircuitNet
from alignscope.steering.probes import LinearProbe, Pooling, fit_logistic_probe, probe_features

WHOLE_PROMPT = Pooling("span")  # every real token (no skips): what uniform attention averages at the last prompt token


def gate_probe(pos: torch.Tensor, negatives: Sequence[torch.Tensor], layer: int, pooling: Pooling = WHOLE_PROMPT) -> LinearProbe:
    """The logistic probe of pooled ``resid_post`` features ``(n, 1, d_model)`` at ``layer``: ``pos`` against every group
    of ``negatives``, each group weighing the same in total."""
    weights = torch.cat([torch.full((len(g),), 1.0 / len(g)) for g in negatives])
    return fit_logistic_probe(pos, torch.cat(list(negatives)), [layer], component="resid_post", pooling=pooling, neg_weights=weights)


def probe_gate_init(lm: LoadedModel, layer: int, positive: Sequence[str], negatives: Sequence[Sequence[str]], axes: torch.Tensor,
                    gate_index: int, *, width: int = 16, scale: float = 1.0, margin: float = 0.0,
                    progress: bool = False) -> dict[str, torch.Tensor]:
    """Starting values of every circuit parameter but the nudges' zeros, by name (see the module docstring).

    Args:
        lm: the model.
        layer: the circuit's layer (its ``resid_post`` is read).
        positive: prompts the gate should open on.
        negatives: groups of prompts it should stay shut on; each group weighs the same in total.
        axes: ``(n_axes, d_model)`` starting sensor directions of the other axes.
        gate_index: the axis whose gate starts as the probe.
        width: the decision attention's query/key width.
        scale: the gate's starting weight on the probe's logit (above 0).
        margin: the probe logit at which the gate starts half open (0: the probe's own decision point; above 0 it
            opens only on prompts the probe is surer of).

    Raises:
        InputError: an empty prompt group, a gate index outside the axes, a scale that is not a finite number above 0, or a margin that is not finite.
    """
    if not positive or not negatives or any(not group for group in negatives):
        raise InputError("expected prompts for the gate to open on and at least one non-empty group to stay shut on",
                         field="gate_init")
    if not 0 <= gate_index < axes.shape[0]:
        raise InputError(f"gate axis {gate_index} is outside the {axes.shape[0]} axes", field="gate_axis")
    if not (math.isfinite(scale) and scale > 0):
        raise InputError(f"expected a finite number above 0, got {scale!r}", field="gate_scale")
    if not math.isfinite(margin):
        raise InputError(f"expected a finite number, got {margin!r}", field="gate_margin")
    pos, *neg = (probe_features(lm, group, [layer], component="resid_post", pooling=WHOLE_PROMPT, token_norm=True,
                                progress=progress) for group in (positive, *negatives))
    probe = gate_probe(pos, neg, layer)
    n_axes = axes.shape[0]
    start = {name: p.detach().clone() for name, p in CircuitNet(axes.shape[1], n_axes, width).named_parameters()}
    start["axes"] = axes.detach().float().clone()
    start["axes"][gate_index] = probe.weight[0]
    start["axis_bias"][gate_index] = probe.bias
    start["query"].zero_()
    start["decide"][gate_index] = 0.0
    start["decide"][gate_index, n_axes + gate_index] = scale
    start["decide_bias"][gate_index] = -scale * margin if margin else 0.0  # not -0.0: the start hashes as before
    del start["nudge"]
    return start
