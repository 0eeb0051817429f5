"""Load any Hugging Face causal LM (or the embedded default) and wrap it in a TransformerBridge.

Example:
    >>> lm = load_model("default")                        # doctest: +SKIP
    >>> lm.n_layers, lm.d_model                           # doctest: +SKIP
    (30, 576)
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from alignscope.errors import AlignscopeError, InputError
from alignscope.models.embedded import gguf_for, gguf_model_dir
from alignscope.models.hf_compat import install_bridge_cache_alias

log = logging.getLogger(__name__)

DEFAULT_MODEL = "default"
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


@dataclass
class LoadedModel:
    """A loaded model: the TransformerBridge, its native HF module, and the tokenizer.

    The bridge wraps the HF modules in place, so ``hf_model`` runs with the bridge's hooks.
    ``source`` is a local directory or hub id that ``from_pretrained`` can load again (weight
    edits reload from it to get an untouched copy).
    """

    name: str
    source: str
    bridge: Any
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    dtype: torch.dtype
    load_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hf_model(self) -> torch.nn.Module:
        """The native HF causal-LM module (shared with the bridge)."""
        return self.bridge.original_model  # type: ignore[no-any-return]

    @property
    def config(self) -> Any:
        """The HF config."""
        return self.hf_model.config

    @property
    def model_type(self) -> str:
        """``config.model_type``, the registry key."""
        return str(self.config.model_type)

    @property
    def n_layers(self) -> int:
        """Number of decoder blocks."""
        return int(self.bridge.cfg.n_layers)

    @property
    def d_model(self) -> int:
        """Residual stream width."""
        return int(self.bridge.cfg.d_model)

    @property
    def n_heads(self) -> int:
        """Number of query heads per layer."""
        return int(self.bridge.cfg.n_heads)

    @property
    def d_head(self) -> int:
        """Width of one head's output ``z``."""
        return int(self.bridge.cfg.d_head)

    @property
    def n_kv_heads(self) -> int:
        """Number of key/value heads (equals ``n_heads`` without grouped-query attention)."""
        kv = getattr(self.bridge.cfg, "n_key_value_heads", None)
        return int(kv) if kv else self.n_heads

    @property
    def vocab_size(self) -> int:
        """Size of the unembedding's output."""
        return int(self.bridge.cfg.d_vocab)

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary (the ``alignscope info`` contract)."""
        archs = getattr(self.config, "architectures", None) or [type(self.hf_model).__name__]
        return {
            "model": self.name,
            "architecture": archs[0],
            "model_type": self.model_type,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
            "vocab_size": self.vocab_size,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "load_seconds": round(self.load_seconds, 4),
        }


def resolve_device(device: str) -> torch.device:
    """``auto`` means cuda, then mps, then cpu; anything else is passed to ``torch.device``."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise InputError(f"unknown device {device!r}; expected auto, cpu, cuda, cuda:N or mps", field="device") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} was asked for but CUDA is not available here", field="device")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None``/``auto``: float32 on CPU, bfloat16 on GPU (where it is supported)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise InputError(f"unknown dtype {dtype!r}; expected auto, {', '.join(_DTYPES)}", field="dtype") from None


def resolve_source(name: str) -> tuple[str, str]:
    """Map a model argument to ``(display name, from_pretrained source)``."""
    shipped = gguf_for(name)
    if shipped is not None:
        return shipped.name, str(gguf_model_dir(shipped))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise InputError("not a Hugging Face model directory (no config.json in it)", path=path)
        return name, str(path)
    if name.startswith((".", "/", "~")):
        raise InputError("model directory does not exist", path=path)
    return name, name


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    dtype: str | torch.dtype | None = None,
    device: str = "auto",
    device_map: str | dict[str, Any] | None = None,
    load_in_4bit: bool = False,
) -> LoadedModel:
    """Load a causal LM by ``default``, hub id or local directory, and wrap it in a TransformerBridge.

    Args:
        name: ``default`` (the embedded SmolLM2-135M-Instruct), ``gemma3-270m`` (with the ``models``
            extra), a hub id, or a local directory.
        dtype: ``auto``/None, ``float32``, ``float16`` or ``bfloat16``.
        device: ``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        device_map: passed to ``from_pretrained`` for multi-GPU placement (then ``device`` is
            only used to place inputs).
        load_in_4bit: quantise with bitsandbytes NF4; needs CUDA.

    Returns:
        The :class:`LoadedModel`.

    Raises:
        InputError: bad device/dtype, a missing directory, or 4-bit without CUDA.
    """
    start = time.perf_counter()
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    display, source = resolve_source(name)
    hf_model, tokenizer = load_hf(source, torch_dtype, dev, device_map=device_map, load_in_4bit=load_in_4bit, name=name)
    hf_model.eval()
    bridge = _make_bridge(source, hf_model, tokenizer)
    seconds = time.perf_counter() - start
    log.info("loaded %s (%s) on %s in %.2fs", display, getattr(hf_model.config, "model_type", "?"), dev, seconds)
    return LoadedModel(name=display, source=source, bridge=bridge, tokenizer=tokenizer,
                       device=dev, dtype=torch_dtype, load_seconds=seconds)


def load_hf(source: str, dtype: torch.dtype, device: torch.device, *, device_map: str | dict[str, Any] | None = None,
            load_in_4bit: bool = False, name: str | None = None) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    """The plain HF model and tokenizer behind :func:`load_model` (no bridge): what training and export use.

    ``source`` is a ``from_pretrained`` source (:func:`resolve_source`); the model is placed on
    ``device`` unless ``device_map`` is given or it is loaded in 4 bits (NF4, CUDA only). The
    tokenizer always has a pad token.

    Raises:
        InputError: 4-bit without CUDA or bitsandbytes.
        AlignscopeError: the model cannot be loaded.
    """
    dev, torch_dtype = device, dtype
    _refuse_pickled_weights(source)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "use_safetensors": True}  # never unpickle weights
    token = os.environ.get("HF_TOKEN")  # read from the environment only; never stored
    if token:
        kwargs["token"] = token
    if load_in_4bit:
        kwargs["quantization_config"] = _four_bit_config(torch_dtype)
        device_map = device_map or {"": dev.index or 0}
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        hf_model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source, token=token) if token else AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        raise AlignscopeError(
            f"could not load model {name or source!r}: {exc}. Pass `default`, a local directory, or a hub id "
            "that is in your HF cache (set HF_TOKEN for gated models)."
        ) from None
    if device_map is None:
        hf_model.to(dev)  # type: ignore[arg-type]
    _ensure_pad_token(tokenizer)
    return hf_model, tokenizer


def _refuse_pickled_weights(source: str) -> None:
    folder = Path(source)
    if folder.is_dir() and not any(folder.glob("*.safetensors")) and (any(folder.glob("*.bin")) or any(folder.glob("*.pt"))):
        raise InputError("the model directory holds only pickle-based weights (.bin/.pt) and alignscope never unpickles; "
                         "save it with save_pretrained(..., safe_serialization=True) first", path=folder)


def _four_bit_config(compute_dtype: torch.dtype) -> Any:
    if not torch.cuda.is_available():
        raise InputError("4-bit loading needs a CUDA GPU with bitsandbytes; none is available here", field="load_in_4bit")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise InputError("4-bit loading needs bitsandbytes: pip install 'alignscope[gpu]'", field="load_in_4bit") from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype)


def _ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> None:
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.convert_ids_to_tokens(0)


def _make_bridge(source: str, hf_model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> Any:
    try:
        bridge = TransformerBridge.boot_transformers(source, hf_model=hf_model, tokenizer=tokenizer)
    except Exception as exc:  # the bridge raises several types for unsupported architectures
        raise AlignscopeError(
            f"TransformerLens cannot wrap {getattr(hf_model, 'config').model_type!r} models: {exc}"  # noqa: B009
        ) from exc
    install_bridge_cache_alias(bridge)
    return bridge
