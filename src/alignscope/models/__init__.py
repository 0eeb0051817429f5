"""Model loading, the embedded default model, chat formatting and the architecture registry."""

from alignscope.models.chat import Encoded, encode_batch, encode_one
from alignscope.models.loader import DEFAULT_MODEL, LoadedModel, load_model

__all__ = ["DEFAULT_MODEL", "Encoded", "LoadedModel", "encode_batch", "encode_one", "load_model"]
