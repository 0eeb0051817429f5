"""The model registry of a sweep (``models.yaml``): one key per model, validated, with errors naming the file and key.

Format (every field but one of ``id``/``path``/``tiny`` optional)::

    models:
      llama-base:
        id: meta-llama/Llama-3.1-8B          # a hub id, `default`, or `gemma3-270m` (alignscope[models])
        dtype: bfloat16                      # auto (default), float32, float16, bfloat16
        load_in_4bit: false
        device_map: auto                     # HF device_map (multi-GPU); none by default
        device: auto                         # auto (default), cpu, cuda, cuda:N, mps
      llama-instruct:
        id: meta-llama/Llama-3.1-8B-Instruct
        partner: llama-base                  # this entry is the aligned model; its base is llama-base
      smol-steered:
        id: default
        intervention: interventions/x.safetensors   # applied whenever this entry runs (path relative to the file)
        partner: smol
      tiny-llama:
        tiny: llama                          # a seeded random-init tiny model, built once into the cache
        seed: 0

``partner`` marks the entry as the *aligned* member of a pair and names its *base*; base-vs-aligned
metrics (``deltas``) run on the entries that have one. An entry whose ``id`` names a shipped GGUF
model that is not installed (``gemma3-270m`` without ``alignscope[models]``) is skipped with a reason.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alignscope.errors import InputError
from alignscope.io import atomic_dir, sha256_file
from alignscope.models.embedded import cache_root, gguf_for
from alignscope.models.identity import resume_key, weights_hash
from alignscope.models.loader import LoadedModel, load_model, resolve_source
from alignscope.models.tiny import TINY_FAMILIES, build_tiny_model
from alignscope.pipeline.config import read_yaml, to_input_error

TinyFamily = Literal["llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "gpt2", "falcon"]


class ModelEntry(BaseModel):
    """One model of the registry (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = None
    path: str | None = None
    tiny: TinyFamily | None = None
    seed: Annotated[int, Field(ge=0)] = 0
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    device: str = "auto"
    load_in_4bit: bool = False
    device_map: str | None = None
    intervention: str | None = None
    partner: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ModelEntry:
        given = [name for name in ("id", "path", "tiny") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of id, path or tiny (got {', '.join(given) or 'none'})")
        return self

    @property
    def wants_gpu(self) -> bool:
        """Whether the entry asks for a GPU (a cuda device, a device map or 4-bit loading)."""
        return self.load_in_4bit or self.device_map is not None or self.device.startswith("cuda")


class CatalogFile(BaseModel):
    """The top level of ``models.yaml``."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, ModelEntry]


class Catalog:
    """A validated registry: entries by key, paths resolved against the file's folder."""

    def __init__(self, entries: dict[str, ModelEntry], path: Path) -> None:
        self.entries = entries
        self.path = path

    def __getitem__(self, key: str) -> ModelEntry:
        return self.entries[key]

    def local_path(self, value: str) -> Path:
        """A path field of an entry, relative to the registry file's folder unless absolute."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.path.parent / p

    def missing(self, key: str) -> str | None:
        """Why entry ``key`` cannot run here (a shipped GGUF model that is not installed), or None."""
        entry = self.entries[key]
        shipped = gguf_for(entry.id) if entry.id is not None else None
        if shipped is not None and not shipped.installed():
            return f"{shipped.name} is not installed ({shipped.install})"
        return None

    def source(self, key: str) -> str:
        """What :func:`~alignscope.models.loader.load_model` loads for ``key`` (a tiny model is built on first use)."""
        entry = self.entries[key]
        if entry.tiny is not None:
            return str(tiny_dir(entry.tiny, entry.seed))
        if entry.path is not None:
            return str(self.local_path(entry.path))
        assert entry.id is not None
        return entry.id

    def prepare(self, key: str) -> str:
        """Resolve ``key``'s weights on disk now (build a tiny model, convert a GGUF), so parallel tasks find them ready."""
        return resolve_source(self.source(key))[1]

    def intervention_file(self, key: str) -> Path | None:
        """The entry's intervention file, resolved (None without one)."""
        value = self.entries[key].intervention
        return None if value is None else self.local_path(value)

    def identity(self, key: str) -> dict[str, Any]:
        """What a result of ``key`` depends on, without loading it: the weights hash (or the id when there are no
        local weight files) and dtype (:func:`~alignscope.models.identity.resume_key`), and the intervention file's hash."""
        entry = self.entries[key]
        source = self.prepare(key)
        sha = weights_hash(source)["sha256"] or hashlib.sha256(source.encode()).hexdigest()
        out: dict[str, Any] = {**resume_key(sha, entry.dtype), "load_in_4bit": entry.load_in_4bit}
        iv = self.intervention_file(key)
        if iv is not None:
            out["intervention_sha256"] = sha256_file(iv) if iv.is_file() else None
        return out

    def load(self, key: str) -> LoadedModel:
        """Load entry ``key`` (without its intervention; see :mod:`alignscope.pipeline.sweep_metrics`)."""
        entry = self.entries[key]
        lm = load_model(self.source(key), dtype=entry.dtype, device=entry.device, device_map=entry.device_map,
                        load_in_4bit=entry.load_in_4bit)
        lm.name = key if entry.tiny is not None or entry.path is not None else lm.name
        return lm


def tiny_dir(family: str, seed: int) -> Path:
    """A seeded tiny model of ``family`` in the cache, built on first use (in a temporary folder renamed into place)."""
    target = cache_root() / "models" / f"tiny-{family}-seed{seed}"
    if (target / "config.json").is_file():
        return target
    try:
        with atomic_dir(target) as tmp:
            build_tiny_model(family, tmp, seed=seed)
    except OSError:
        if not (target / "config.json").is_file():  # another process may have finished the same build first
            raise
    return target


_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def load_catalog(path: str | Path) -> Catalog:
    """Read and validate a registry file.

    Raises:
        InputError: a missing file, invalid YAML (line named), an unknown or bad field (``models.KEY.FIELD``
            named with the allowed fields), an entry without exactly one of id/path/tiny, a ``partner`` that
            is not a key of the file, a missing ``path`` or ``intervention`` file.
    """
    file = Path(path)
    data = read_yaml(file)
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping with a `models` section, got {type(data).__name__}", path=file)
    extra = [str(k) for k in data if k != "models"]
    if extra:
        raise InputError("unknown top-level key; the file holds one `models` section", path=file, field=extra[0])
    try:
        parsed = CatalogFile.model_validate(data)
    except ValidationError as exc:
        raise _entry_error(exc, str(file)) from None
    if not parsed.models:
        raise InputError("no models listed", path=file, field="models")
    for key in parsed.models:  # keys name output folders (DIR/models/KEY): no path separators, no `..`
        if not _KEY.fullmatch(str(key)):
            raise InputError("a model key names its output folder: use letters, digits, '.', '_' and '-', starting with a "
                             f"letter or digit (got {str(key)!r})", path=file, field=f"models.{key}")
    catalog = Catalog(dict(parsed.models), file)
    for key, entry in parsed.models.items():
        if entry.partner is not None and entry.partner not in parsed.models:
            raise InputError(f"partner {entry.partner!r} is not a key of this file; keys: {', '.join(parsed.models)}",
                             path=file, field=f"models.{key}.partner")
        if entry.partner == key:
            raise InputError("an entry cannot be its own partner", path=file, field=f"models.{key}.partner")
        for name in ("path", "intervention"):
            value = getattr(entry, name)
            if value is not None and not catalog.local_path(value).exists():
                raise InputError(f"{name} {value!r} does not exist (relative paths start at the registry's folder)",
                                 path=file, field=f"models.{key}.{name}")
    return catalog


def _entry_error(exc: ValidationError, source: str) -> InputError:
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden" and len(loc) == 3 and loc[0] == "models":
        field = ".".join(str(p) for p in loc)
        return InputError(f"unknown key; allowed keys of a model entry: {', '.join(ModelEntry.model_fields)}", path=source, field=field)
    if err["type"] == "value_error" and len(loc) == 2:
        return InputError(str(err["msg"]).removeprefix("Value error, "), path=source, field=".".join(str(p) for p in loc))
    return to_input_error(exc, source, CatalogFile)


if set(get_args(TinyFamily)) != set(TINY_FAMILIES):  # pragma: no cover - a guard for whoever adds a family
    raise AssertionError("TinyFamily must list models.tiny.TINY_FAMILIES")
