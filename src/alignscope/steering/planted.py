"""A planted refusal mechanism at a known site: the known answer a circuit study must find.

:func:`plant_refusal` builds a :class:`~alignscope.steering.conditional.ConditionalSteering`
(no new hook code): a logistic probe on ``resid_pre`` of layer ``layer``, averaged over
the user's message (span pooling; the last token without a chat template), gates an addition of a
refusal vector to ``component`` of that same layer. The gate is read
first, in the same block, so the addition fires on the prompts the probe calls harmful and
nowhere else, and the only place it writes is ``component@layer``. Ablating that one component
removes it; patching that component (harmful into harmless) carries it. The gate reads the user's
message, not the post-instruction tokens a circuit study patches, so a patch never moves it.

Vectors:

* ``contrast``: the refusal-mode vector at ``layer`` (last-token mean of ``prompt + "I'm sorry,
  but I can't"`` minus ``prompt + "Sure, here is how"`` over the harmful prompts), as the
  refusal study's behaviour vector; it makes a real model start real refusals;
* ``unembed``: the unit mean of the unembedding rows of the refusal-starting tokens, scaled by
  ``coefficient`` (on a random-init test model, the one vector certain to raise their logits).

Example:
    >>> iv = plant_refusal(lm, harmful, harmless, layer=14, coefficient=1.5)   # doctest: +SKIP
    >>> save_intervention("planted.safetensors", iv, model=lm.name)           # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from alignscope.errors import InputError
from alignscope.metrics import refusal_token_ids
from alignscope.models.loader import LoadedModel
from alignscope.sites import Site
from alignscope.steering.conditional import ConditionalSteering
from alignscope.steering.directions import suffix_contrast
from alignscope.steering.probes import Pooling, chat_span, fit_logistic_probe, probe_features

VECTORS = ("contrast", "unembed")
REFUSAL_PREFIX = "I'm sorry, but I can't"
COMPLIANCE_PREFIX = "Sure, here is how"


def refusal_vector(lm: LoadedModel, harmful: Sequence[str], layer: int, kind: str, *, chat: bool = True) -> torch.Tensor:
    """The ``(d_model,)`` vector the plant adds (before its coefficient); see the module docstring."""
    if kind == "contrast":
        return suffix_contrast(lm, harmful, REFUSAL_PREFIX, COMPLIANCE_PREFIX, layers=[layer], chat=chat)[0]
    if kind == "unembed":
        ids = torch.tensor(refusal_token_ids(lm.tokenizer))
        rows = lm.hf_model.get_output_embeddings().weight.detach().float().cpu()[ids]  # type: ignore[operator, union-attr]
        vec = rows.mean(0)
        return vec / vec.norm().clamp_min(1e-12)
    raise InputError(f"unknown plant vector {kind!r}; choose one of {', '.join(VECTORS)}", field="vector")


def plant_refusal(lm: LoadedModel, harmful: Sequence[str], harmless: Sequence[str], *, layer: int, component: str = "mlp_out",
                  vector: str = "contrast", coefficient: float = 1.0, chat: bool = True, batch_size: int = 16) -> ConditionalSteering:
    """A gated refusal addition at ``component@layer`` whose gate reads ``resid_pre@layer``.

    Args:
        lm: the model to plant into.
        harmful: prompts the gate's logistic probe is fitted on as positives (the gate is on where its logit is positive).
        harmless: the probe's negatives.
        layer: the planted layer.
        component: where the vector is added (``mlp_out`` or ``attn_out``: a component a study ablates).
        vector: ``contrast`` or ``unembed``.
        coefficient: scale of the addition.
        chat: chat-format the prompts.
        batch_size: prompts per forward pass.

    Raises:
        InputError: an out-of-range layer, an unknown vector or component, no prompts.
    """
    if component not in ("mlp_out", "attn_out"):
        raise InputError(f"the plant writes mlp_out or attn_out, got {component!r}", field="component")
    Site(layer, component).validate(lm)
    if not harmful or not harmless:
        raise InputError("the plant's gate needs harmful and harmless prompts", field="prompts")
    pooling = Pooling("span", skip_head=chat_span(lm.tokenizer)[0], skip_tail=chat_span(lm.tokenizer)[1]) if chat else Pooling()
    pos = probe_features(lm, harmful, [layer], pooling=pooling, chat=chat, batch_size=batch_size)
    neg = probe_features(lm, harmless, [layer], pooling=pooling, chat=chat, batch_size=batch_size)
    probe = fit_logistic_probe(pos, neg, [layer], pooling=pooling)
    vec = refusal_vector(lm, harmful, layer, vector, chat=chat)
    return ConditionalSteering(probe, vec, (layer,), coefficient, 0.0, component)
