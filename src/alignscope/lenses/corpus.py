"""Text corpora for the tuned lens: the built-in one, a text file, or a Hugging Face dataset, cut into chunks.

The built-in corpus (``data/builtin/lens_corpus.txt``, 135 kB, about 32k SmolLM2 tokens) has two
parts. Its first 93 documents (38 kB) are the project's own writing in many registers:
explanations, stories, dialogues, instructions, news-like prose, lists and code with comments.
The remaining 135 documents were sampled from the embedded SmolLM2-135M-Instruct itself with
:func:`alignscope.lenses.augment.sample_documents` (``writing_requests()``, chat mode,
``max_new_tokens=220``, ``batch_size=28``, ``seed=0``, temperature 0.8, top-p 0.95).
``data/builtin/lens_heldout.txt`` is separate hand-written text, never trained on and never used
to choose any setting, for the "text it never saw" evaluation. Documents are separated by blank lines; the tokenised documents
are joined with the EOS token and cut into fixed-length chunks.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import torch
from jaxtyping import Int
from transformers import PreTrainedTokenizerBase

from alignscope.errors import InputError

BUILTIN_CORPUS = "lens_corpus.txt"
BUILTIN_HELDOUT = "lens_heldout.txt"


def builtin_text(name: str) -> str:
    """Text of a file in ``alignscope/data/builtin``."""
    return resources.files("alignscope.data").joinpath("builtin", name).read_text(encoding="utf-8")


def load_corpus_text(source: str | Path | None, *, heldout: bool = False) -> str:
    """Corpus text from ``source``: None (built-in), a text file, or ``hf:NAME[:SPLIT[:FIELD]]``.

    Raises:
        InputError: a missing or empty file, or a dataset that cannot be loaded offline.
    """
    if source is None:
        return builtin_text(BUILTIN_HELDOUT if heldout else BUILTIN_CORPUS)
    text_source = str(source)
    if text_source.startswith("hf:"):
        return _hf_text(text_source)
    path = Path(text_source).expanduser()
    if not path.is_file():
        raise InputError("corpus file does not exist", path=path)
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise InputError("corpus file is empty", path=path)
    return text


def _hf_text(spec: str) -> str:
    parts = spec[3:].split(":")
    name, split, field = parts[0], parts[1] if len(parts) > 1 else "train", parts[2] if len(parts) > 2 else "text"
    try:
        import datasets

        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # datasets raises many types (missing, offline, bad split)
        raise InputError(f"cannot load dataset {name!r} split {split!r}: {exc}", field="corpus") from None
    if field not in ds.column_names:
        raise InputError(f"dataset {name!r} has no column {field!r}; columns: {', '.join(ds.column_names)}", field="corpus")
    return "\n\n".join(str(t) for t in ds[field] if t)


def documents(text: str) -> list[str]:
    """Split text into documents at blank lines (leading/trailing space stripped, empties dropped)."""
    return [d.strip() for d in text.replace("\r\n", "\n").split("\n\n") if d.strip()]


def token_chunks(tokenizer: PreTrainedTokenizerBase, text: str, seq_len: int) -> Int[torch.Tensor, "n_chunks seq"]:
    """Tokenise documents, join them with EOS and cut into ``seq_len``-token chunks (the tail is dropped).

    Raises:
        InputError: the text gives fewer than ``seq_len`` tokens.
    """
    if seq_len < 2:
        raise InputError(f"seq_len must be >= 2, got {seq_len}", field="seq_len")
    sep = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.pad_token_id
    stream: list[int] = []
    for doc in documents(text):
        stream.extend(tokenizer(doc, add_special_tokens=False)["input_ids"])
        stream.append(int(sep))
    n = len(stream) // seq_len
    if n == 0:
        raise InputError(f"the corpus has {len(stream)} tokens, fewer than one chunk of {seq_len}", field="corpus")
    return torch.tensor(stream[: n * seq_len], dtype=torch.long).reshape(n, seq_len)


def text_sha256(text: str) -> str:
    """SHA-256 of the UTF-8 text (identifies a corpus in checkpoints and lens metadata)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
