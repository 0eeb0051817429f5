"""The one place that knows how each architecture family lays out its native HF modules.

Keyed by ``config.model_type``. Anything architecture-specific (where the decoder layers
are, which matrices write into the residual stream, whether attention runs in parallel with
the MLP) is looked up here; nothing else in alignscope dispatches on model names.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignscope.errors import AlignscopeError


@dataclass(frozen=True)
class ArchSpec:
    """How one family's native HF module tree is laid out.

    Attributes:
        model_type: ``config.model_type``.
        layers: dotted path from the causal-LM module to the decoder-layer list.
        embed: dotted path to the token embedding.
        final_norm: dotted path to the final norm.
        attn_out: path, relative to one decoder layer, of the attention output projection.
        mlp_out: path, relative to one decoder layer, of the MLP output projection.
        parallel_attn: attention and MLP read the same input (no ``resid_mid`` site).
        conv1d: projections are GPT-2 ``Conv1D`` (weight stored as ``(in, out)``).
        post_sublayer_norm: a norm sits between each sublayer's output projection and the
            residual add (Gemma 2/3), so weight orthogonalisation is not an exact ablation.
        pos_embed: dotted path to a learned absolute position embedding that is added to the
            residual stream (GPT-2), or None; weight edits orthogonalise it too.
        attn_write: path, relative to one decoder layer, of the module whose output is what
            attention adds to the residual stream (the bridge's ``hook_attn_out``); None means
            ``attn_out``. Gemma 2/3 add the post-attention norm's output.
        mlp_write: the same for the MLP (``hook_mlp_out``); None means ``mlp_out``.
    """

    model_type: str
    layers: str
    embed: str
    final_norm: str
    attn_out: str
    mlp_out: str
    parallel_attn: bool = False
    conv1d: bool = False
    post_sublayer_norm: bool = False
    pos_embed: str | None = None
    attn_write: str | None = None
    mlp_write: str | None = None

    def write_path(self, component: str) -> str:
        """Path, relative to a decoder layer, of what ``attn_out``/``mlp_out`` add to the residual stream.

        Raises:
            AlignscopeError: ``component`` is neither ``attn_out`` nor ``mlp_out``.
        """
        if component == "attn_out":
            return self.attn_write or self.attn_out
        if component == "mlp_out":
            return self.mlp_write or self.mlp_out
        raise AlignscopeError(f"no sublayer output path for component {component!r}; expected attn_out or mlp_out")


_REGISTRY: dict[str, ArchSpec] = {}


def register(spec: ArchSpec) -> ArchSpec:
    """Add a family to the registry. Registering the same ``model_type`` twice is an error."""
    if spec.model_type in _REGISTRY:
        raise AlignscopeError(f"architecture {spec.model_type!r} is already registered")
    _REGISTRY[spec.model_type] = spec
    return spec


def supported_model_types() -> list[str]:
    """Sorted ``model_type`` values with an entry in the registry."""
    return sorted(_REGISTRY)


def get_arch(model_type: str) -> ArchSpec:
    """Look up a family by ``config.model_type``.

    Raises:
        AlignscopeError: the family is not registered; the message lists the ones that are.
    """
    try:
        return _REGISTRY[model_type]
    except KeyError:
        raise AlignscopeError(
            f"architecture {model_type!r} has no alignscope registry entry; "
            f"supported: {', '.join(supported_model_types())}. "
            "Add one with alignscope.models.registry.register(ArchSpec(...))."
        ) from None


def resolve_module(root: torch.nn.Module, dotted: str) -> torch.nn.Module:
    """Follow a dotted path (list indices allowed) from ``root`` to a submodule."""
    module = root
    for part in dotted.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)  # type: ignore[index]
    return module


def decoder_layers(hf_model: torch.nn.Module) -> list[torch.nn.Module]:
    """The decoder layers of a native HF causal LM, in order."""
    spec = get_arch(str(getattr(hf_model, "config").model_type))  # noqa: B009
    return list(resolve_module(hf_model, spec.layers))  # type: ignore[call-overload]


_LLAMA_LIKE: dict[str, str] = {"layers": "model.layers", "embed": "model.embed_tokens", "final_norm": "model.norm",
               "attn_out": "self_attn.o_proj", "mlp_out": "mlp.down_proj"}

for _mt in ("llama", "mistral", "qwen2", "qwen3", "phi3", "gemma"):
    register(ArchSpec(_mt, **_LLAMA_LIKE))  # type: ignore[arg-type]
for _mt in ("gemma2", "gemma3_text"):
    register(ArchSpec(_mt, post_sublayer_norm=True, attn_write="post_attention_layernorm",
                      mlp_write="post_feedforward_layernorm", **_LLAMA_LIKE))  # type: ignore[arg-type]
register(ArchSpec(
    model_type="gpt2", layers="transformer.h", embed="transformer.wte", final_norm="transformer.ln_f",
    attn_out="attn.c_proj", mlp_out="mlp.c_proj", conv1d=True, pos_embed="transformer.wpe",
))
register(ArchSpec(
    model_type="falcon", layers="transformer.h", embed="transformer.word_embeddings",
    final_norm="transformer.ln_f", attn_out="self_attention.dense", mlp_out="mlp.dense_4h_to_h",
    parallel_attn=True,
))
register(ArchSpec(
    model_type="gpt_neox", layers="gpt_neox.layers", embed="gpt_neox.embed_in",
    final_norm="gpt_neox.final_layer_norm", attn_out="attention.dense", mlp_out="mlp.dense_4h_to_h",
    parallel_attn=True,
))
