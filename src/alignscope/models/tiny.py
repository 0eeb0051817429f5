"""Tiny random-init models for every supported architecture family, built offline.

They exist so that tests, benchmarks and users can exercise the real loading path
(``save_pretrained`` then ``from_pretrained``) without any download. Dimensions are
deliberately distinct (vocab 99, hidden 32, 2 layers, 4 heads, intermediate 37) so that a
transposed or mislabelled axis fails loudly.

Example:
    >>> path = build_tiny_model("llama", tmp_dir)          # doctest: +SKIP
    >>> loaded = load_model(str(path))                     # doctest: +SKIP
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

TINY_VOCAB = 99
TINY_HIDDEN = 32
TINY_LAYERS = 2
TINY_HEADS = 4
TINY_KV_HEADS = 2
TINY_INTERMEDIATE = 37

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]

TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<s>' + message['role'] + ':' + message['content'] + '</s>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<s>assistant:' }}{% endif %}"
)

_COMMON: dict[str, Any] = {"vocab_size": TINY_VOCAB, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3}

_DECODER: dict[str, Any] = {
    **_COMMON,
    "hidden_size": TINY_HIDDEN,
    "num_hidden_layers": TINY_LAYERS,
    "num_attention_heads": TINY_HEADS,
    "num_key_value_heads": TINY_KV_HEADS,
    "intermediate_size": TINY_INTERMEDIATE,
    "max_position_embeddings": 128,
}

TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "llama": _DECODER,
    "mistral": {**_DECODER, "sliding_window": None},
    "qwen2": _DECODER,
    "qwen3": {**_DECODER, "head_dim": 8},
    "gemma2": {**_DECODER, "head_dim": 8, "query_pre_attn_scalar": 8, "sliding_window": 64},
    "gemma3_text": {**_DECODER, "head_dim": 8, "query_pre_attn_scalar": 8, "sliding_window": 64},
    "gpt2": {**_COMMON, "n_embd": TINY_HIDDEN, "n_layer": TINY_LAYERS, "n_head": TINY_HEADS,
             "n_inner": TINY_INTERMEDIATE, "n_positions": 128},
    "falcon": {**_COMMON, "hidden_size": TINY_HIDDEN, "num_hidden_layers": TINY_LAYERS,
               "num_attention_heads": TINY_HEADS, "new_decoder_architecture": False,
               "multi_query": True, "parallel_attn": True, "alibi": False, "bias": False},
}
"""Per ``model_type`` config overrides; the keys are the families the tests cover."""

TINY_FAMILIES: tuple[str, ...] = tuple(TINY_CONFIGS)


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer whose 99 ids fit the tiny models' vocabulary.

    Printable ASCII (95 characters) plus four special tokens gives exactly 99 ids.
    """
    chars = [c for c in string.printable if c not in "\t\n\r\x0b\x0c"]
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
    # Map whitespace we dropped from the alphabet onto the plain space id.
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    backend.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
    tok.chat_template = TINY_CHAT_TEMPLATE
    if len(tok) != TINY_VOCAB:
        raise AssertionError(f"tiny tokenizer has {len(tok)} ids, expected {TINY_VOCAB}")
    return tok


def build_tiny_model(model_type: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Build a random-init model of one family and save it, with a tokenizer, to ``out_dir``.

    Args:
        model_type: one of :data:`TINY_FAMILIES`.
        out_dir: directory to write (created if missing).
        seed: torch seed for the random init.

    Returns:
        The directory, loadable with ``AutoModelForCausalLM.from_pretrained``.
    """
    if model_type not in TINY_CONFIGS:
        raise ValueError(f"no tiny config for {model_type!r}; choose from {', '.join(TINY_FAMILIES)}")
    config_cls = transformers.CONFIG_MAPPING[model_type]
    config = config_cls(**TINY_CONFIGS[model_type])
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    # Random init leaves norms at 1 and biases at 0; perturb them so bugs that ignore them show.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim == 1:
                param.add_(0.1 * torch.randn_like(param))
            elif "embed" in name or "wte" in name or "word_embeddings" in name:
                param.normal_(0.0, 0.5)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    build_tiny_tokenizer().save_pretrained(out)
    return out
