"""The model's own read-out (final norm, unembedding, logit soft-capping) and its frozen linearisation.

Logit lenses apply the real read-out to intermediate residuals. Direct logit attribution needs
the read-out as a *linear* map: the final norm's scale is frozen at the value it had in the
actual run, so the read-out of a sum of residual parts is the sum of the read-outs of the parts.

Example:
    >>> ue = Unembedder.from_model(lm)                     # doctest: +SKIP
    >>> logits = ue(resid)                                 # (..., d_model) -> (..., vocab)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float

from alignscope.errors import AlignscopeError
from alignscope.models.loader import LoadedModel
from alignscope.models.registry import get_arch, resolve_module

# A linearised norm must reproduce the real one this closely (relative to the output's largest entry).
_NORM_CHECK_RTOL = 1e-4


def native(module: torch.nn.Module) -> torch.nn.Module:
    """The native HF module under a TransformerBridge wrapper (hooks on the wrapper do not fire)."""
    return getattr(module, "original_component", module)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class FrozenNorm:
    """A norm with its scale frozen: ``y = center(x) * gain + bias``, linear in ``x``.

    Attributes:
        center: subtract the mean over the last axis first (LayerNorm) or not (RMSNorm).
        gain: ``(..., d_model)`` effective weight divided by the frozen scale.
        bias: ``(d_model,)`` additive term (zeros for RMSNorm).
    """

    center: bool
    gain: torch.Tensor
    bias: torch.Tensor

    def linear(self, x: Float[torch.Tensor, "... d"]) -> Float[torch.Tensor, "... d"]:
        """The linear part applied to one residual part ``x`` (no bias)."""
        if self.center:
            x = x - x.mean(-1, keepdim=True)
        return x * self.gain

    def apply(self, x: Float[torch.Tensor, "... d"]) -> Float[torch.Tensor, "... d"]:
        """The full frozen norm: linear part plus bias."""
        return self.linear(x) + self.bias

    def cpu(self) -> FrozenNorm:
        """A float32 CPU copy."""
        return FrozenNorm(self.center, self.gain.detach().float().cpu(), self.bias.detach().float().cpu())


def freeze_norm(norm: torch.nn.Module, x: Float[torch.Tensor, "... d"]) -> FrozenNorm:
    """Linearise ``norm`` at input ``x``: LayerNorm, RMSNorm with weight ``w`` or with ``1 + w`` (Gemma).

    The form is checked against the module's real output, so an unknown norm raises instead of
    silently giving a wrong decomposition.

    Raises:
        AlignscopeError: the norm is not one of the supported forms.
    """
    norm = native(norm)
    weight = getattr(norm, "weight", None)
    if weight is not None:
        x = x.to(device=weight.device, dtype=weight.dtype)
    xf = x.float()
    with torch.no_grad():
        real = norm(x).float()
    w = torch.ones(x.shape[-1], device=x.device) if weight is None else weight.detach().float()
    eps = float(next((getattr(norm, a) for a in ("variance_epsilon", "eps", "epsilon") if hasattr(norm, a)), 1e-6))
    if isinstance(norm, torch.nn.LayerNorm):
        bias = norm.bias.detach().float() if norm.bias is not None else torch.zeros_like(w)
        scale = (xf.var(-1, unbiased=False, keepdim=True) + eps).sqrt()
        candidates = [FrozenNorm(True, w / scale, bias)]
    else:
        scale = (xf.pow(2).mean(-1, keepdim=True) + eps).sqrt()
        zeros = torch.zeros_like(w)
        candidates = [FrozenNorm(False, (w + offset) / scale, zeros) for offset in (0.0, 1.0)]
    rtol = _NORM_CHECK_RTOL if x.dtype == torch.float32 else 2e-2  # half precision rounds the real output
    tol = rtol * float(real.abs().max().clamp_min(1.0))
    for cand in candidates:
        if float((cand.linear(xf) + cand.bias - real).abs().max()) <= tol:
            return cand
    raise AlignscopeError(f"cannot linearise the norm {type(norm).__name__}: it is neither LayerNorm nor an RMSNorm "
                          "with weight w or 1 + w; direct logit attribution does not support it")


class Unembedder:
    """The model's read-out from the residual stream to logits, using its native modules.

    Attributes:
        norm: the native final norm.
        weight: ``(vocab, d_model)`` unembedding matrix.
        bias: ``(vocab,)`` unembedding bias (zeros when the model has none).
        softcap: Gemma-2 style final logit soft-cap ``c * tanh(x / c)``, or None.
    """

    def __init__(self, norm: torch.nn.Module, head: torch.nn.Module, softcap: float | None) -> None:
        self.norm = native(norm)
        head = native(head)
        self.weight: torch.Tensor = head.weight.detach()  # type: ignore[operator]
        bias = getattr(head, "bias", None)
        self.bias: torch.Tensor = torch.zeros(self.weight.shape[0], device=self.weight.device) if bias is None else bias.detach()
        self.softcap = float(softcap) if softcap else None

    @classmethod
    def from_model(cls, lm: LoadedModel) -> Unembedder:
        """Build from a loaded model, finding the final norm through the architecture registry."""
        spec = get_arch(lm.model_type)
        head = lm.hf_model.get_output_embeddings()  # type: ignore[operator]
        if head is None:
            raise AlignscopeError(f"{lm.name} has no output embedding (unembedding) module")
        return cls(resolve_module(lm.hf_model, spec.final_norm), head, getattr(lm.config, "final_logit_softcapping", None))

    def cap(self, logits: torch.Tensor) -> torch.Tensor:
        """Apply the soft-cap (identity when the model has none)."""
        if self.softcap is None:
            return logits
        return torch.tanh(logits / self.softcap) * self.softcap

    def __call__(self, resid: Float[torch.Tensor, "... d"]) -> Float[torch.Tensor, "... vocab"]:
        """Logits of residual vectors: final norm, unembedding, soft-cap, in the model's dtype."""
        normed = self.norm(resid.to(self.weight.dtype))
        return self.cap(torch.nn.functional.linear(normed, self.weight, self.bias))

    def norm_detached(self, resid: Float[torch.Tensor, "... d"]) -> Float[torch.Tensor, "... d"]:
        """The final norm with its parameters detached: gradients reach ``resid`` but never the model."""
        params = {k: v.detach() for k, v in self.norm.named_parameters()}
        return torch.func.functional_call(self.norm, params, (resid,))  # type: ignore[no-any-return]

    def logits_from_normed(self, normed: Float[torch.Tensor, "... d"]) -> Float[torch.Tensor, "... vocab"]:
        """Logits from an already-normed vector (used by the tuned lens' training step)."""
        return self.cap(torch.nn.functional.linear(normed, self.weight.to(normed.dtype), self.bias.to(normed.dtype)))
