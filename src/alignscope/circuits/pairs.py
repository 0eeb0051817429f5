"""Clean/corrupt prompt pairs: loading from JSONL, tokenising, and the token-alignment check.

A pair file has one JSON object per line with the string fields ``clean``, ``corrupt``,
``answer`` and ``foil`` (and an optional ``id``). ``answer`` and ``foil`` must each be a single
token (e.g. ``" Paris"`` with its leading space). Patching compares the two prompts position by
position, so they must tokenise to the same number of tokens.

Example:
    >>> pair = PromptPair("The Eiffel Tower is in", "The Colosseum is in", " Paris", " Rome")
    >>> enc = encode_pair(lm.tokenizer, pair)               # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from alignscope.errors import InputError
from alignscope.metrics import single_token_id
from alignscope.models.chat import encode_one
from alignscope.tables import parse_json, parse_jsonl, read_records, read_text

PAIR_FIELDS = ("clean", "corrupt", "answer", "foil")


@dataclass(frozen=True)
class PromptPair:
    """A clean prompt, its corrupted counterpart, and the answer/foil tokens that tell them apart."""

    clean: str
    corrupt: str
    answer: str
    foil: str
    id: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class EncodedPair:
    """A tokenised, aligned pair.

    Attributes:
        pair: the text pair.
        clean_ids: token ids of the clean prompt.
        corrupt_ids: token ids of the corrupt prompt (same length).
        answer_id: id of the answer token.
        foil_id: id of the foil token.
        tokens: clean-prompt tokens as strings (axis labels).
    """

    pair: PromptPair
    clean_ids: list[int]
    corrupt_ids: list[int]
    answer_id: int
    foil_id: int
    tokens: list[str]


def load_pairs(path: str | Path) -> list[PromptPair]:
    """Read a JSONL pair file.

    Raises:
        InputError: unreadable file, bad JSON, or a missing/non-string/empty field; the message
            names the file, the line and the field.
    """
    p = Path(path)
    pairs = []
    for number, record in read_records(p, what="pair file", expected="a JSON object with fields clean, corrupt, answer, foil"):
        values = {}
        for name in PAIR_FIELDS:
            value = record.get(name)
            if not isinstance(value, str) or not value:
                raise InputError(f"missing or empty string field (need {', '.join(PAIR_FIELDS)})", path=p, line=number, field=name)
            values[name] = value
        pid = record.get("id")
        pairs.append(PromptPair(**values, id=None if pid is None else str(pid)))
    if not pairs:
        raise InputError("no pairs found (expected one JSON object per line)", path=p)
    return pairs


def check_aligned(tokenizer: PreTrainedTokenizerBase, clean_ids: Sequence[int], corrupt_ids: Sequence[int],
                  *, where: str = "") -> None:
    """Raise a clear error when the two prompts do not tokenise to the same length.

    Raises:
        InputError: the message shows both tokenisations side by side.
    """
    if len(clean_ids) == len(corrupt_ids):
        return
    clean_toks = tokenizer.convert_ids_to_tokens(list(clean_ids))
    corrupt_toks = tokenizer.convert_ids_to_tokens(list(corrupt_ids))
    prefix = f"{where}: " if where else ""
    raise InputError(
        f"{prefix}clean and corrupt prompts must have the same number of tokens to be patched position by position, "
        f"but clean has {len(clean_ids)} and corrupt has {len(corrupt_ids)}.\n"
        f"  clean   ({len(clean_ids)}): {clean_toks}\n  corrupt ({len(corrupt_ids)}): {corrupt_toks}\n"
        "Reword one prompt so the differing words split into the same number of tokens.",
        field="corrupt",
    )


def encode_pair(tokenizer: PreTrainedTokenizerBase, pair: PromptPair, *, chat: bool = False, where: str = "") -> EncodedPair:
    """Tokenise a pair (raw ``tokenizer(text)`` unless ``chat``) and check alignment and answer tokens."""
    clean_ids, _ = encode_one(tokenizer, pair.clean, chat=chat)
    corrupt_ids, _ = encode_one(tokenizer, pair.corrupt, chat=chat)
    check_aligned(tokenizer, clean_ids, corrupt_ids, where=where)
    answer_id = single_token_id(tokenizer, pair.answer, field="answer")
    foil_id = single_token_id(tokenizer, pair.foil, field="foil")
    if answer_id == foil_id:
        raise InputError(f"answer {pair.answer!r} and foil {pair.foil!r} are the same token", field="foil")
    tokens = [str(t) for t in tokenizer.convert_ids_to_tokens(list(clean_ids))]
    return EncodedPair(pair, list(clean_ids), list(corrupt_ids), answer_id, foil_id, tokens)


@dataclass(frozen=True)
class TraceItem:
    """One causal-tracing prompt: the text, the subject substring to noise, and optional answer/foil tokens."""

    prompt: str
    subject: str
    answer: str | None = None
    foil: str | None = None
    id: str | None = None


def load_trace_items(path: str | Path) -> list[TraceItem]:
    """Read tracing prompts: JSONL, or a JSON list (ROME's ``known_1000.json`` works as is).

    Fields: ``prompt`` and ``subject`` (required strings), ``answer`` and ``foil`` (optional, single
    tokens), ``id`` or ``known_id`` (optional).

    Raises:
        InputError: naming the file, the line (or item) and the field.
    """
    p = Path(path)
    text = read_text(p, what="prompt file", empty="expected JSONL or a JSON list of objects")
    # (message prefix, line) per record: a JSON list's items have no line of their own
    records: list[tuple[str, int | None, object]]
    if text.lstrip().startswith("["):
        data = parse_json(text, p)
        records = [(f"item {i}: ", None, rec) for i, rec in enumerate(data, start=1)]
    else:
        records = [("", number, rec) for number, rec in parse_jsonl(text, p)]
    items = []
    for loc, number, rec in records:
        if not isinstance(rec, dict):
            raise InputError(f"{loc}expected an object with fields prompt and subject", path=p, line=number)
        for name in ("prompt", "subject"):
            if not isinstance(rec.get(name), str) or not rec[name]:
                raise InputError(f"{loc}missing or empty string field", path=p, line=number, field=name)
        for name in ("answer", "foil"):
            if rec.get(name) is not None and not isinstance(rec[name], str):
                raise InputError(f"{loc}must be a string", path=p, line=number, field=name)
        rid = rec.get("id", rec.get("known_id"))
        items.append(TraceItem(rec["prompt"], rec["subject"], rec.get("answer"), rec.get("foil"), None if rid is None else str(rid)))
    if not items:
        raise InputError("no prompts found", path=p)
    return items
