"""Hypothesis strategies for hostile input files: broken structure, wrong types, huge numbers, NaN, BOMs, bad bytes."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

from hypothesis import strategies as st

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(["", " ", "\x00", "\ufeff", "../../etc/passwd", "<script>alert(1)</script>", "A" * 5000,
                     "harmful", "harmless", "safe", "unsafe", "resid_post", "-1", "1e400"]),
)
JSON_VALUES = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=5),
                           max_leaves=12)


def dumps(value: Any) -> str:
    """JSON text with NaN/Infinity allowed (Python's json writes them; strict readers must refuse them cleanly)."""
    return json.dumps(value, allow_nan=True)


def records(fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects that mostly use the expected field names, with values of any type."""
    keys = st.sampled_from([*fields, "extra", ""]) | st.text(max_size=8)
    return st.dictionaries(keys, JSON_VALUES, max_size=len(fields) + 2)


def mangle(text: str) -> st.SearchStrategy[bytes]:
    """``text`` as bytes, then maybe truncated, given a BOM, spliced with bad UTF-8, or padded with a huge line."""
    raw = text.encode("utf-8")

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        out = raw
        if draw(st.booleans()) and out:
            out = out[: draw(st.integers(0, len(out)))]
        choice = draw(st.sampled_from(["none", "bom", "bad_utf8", "long_line", "nul", "deep"]))
        if choice == "bom":
            out = b"\xef\xbb\xbf" + out
        elif choice == "bad_utf8":
            at = draw(st.integers(0, len(out)))
            out = out[:at] + b"\xff\xfe\xc3" + out[at:]
        elif choice == "long_line":
            out = out + b"\n" + b"x" * 200_000
        elif choice == "nul":
            out = out.replace(b",", b"\x00,", 1)
        elif choice == "deep":
            out = b"[" * 100_000 + out
        return out

    return build()


def jsonl_files(fields: list[str]) -> st.SearchStrategy[bytes]:
    """A JSONL file of (mostly) objects with ``fields``, mangled."""
    lines = st.lists(st.one_of(records(fields).map(dumps), JSON_VALUES.map(dumps), st.text(max_size=30)), max_size=6)
    return lines.map("\n".join).flatmap(mangle)


def json_files(fields: list[str]) -> st.SearchStrategy[bytes]:
    """A JSON document: a list of objects with ``fields`` or any value, mangled."""
    doc = st.one_of(st.lists(records(fields), max_size=5), JSON_VALUES, records(fields))
    return doc.map(dumps).flatmap(mangle)


def csv_files(fields: list[str]) -> st.SearchStrategy[bytes]:
    """A CSV file whose header is a permutation/subset of ``fields`` and whose cells are any text, mangled."""
    @st.composite
    def build(draw: st.DrawFn) -> str:
        header = draw(st.lists(st.sampled_from([*fields, "x"]), max_size=len(fields) + 1))
        rows = draw(st.lists(st.lists(st.text(max_size=20) | st.sampled_from(['"', '""', "1e400", "nan", "safe", "unsafe"]),
                                      max_size=len(header) + 1), max_size=5))
        return "\n".join([",".join(header), *(",".join(r) for r in rows)])

    return build().flatmap(mangle)


def yaml_files(fields: list[str]) -> st.SearchStrategy[bytes]:
    """YAML (written as JSON, a YAML subset, plus raw YAML oddities), mangled."""
    doc = st.one_of(records(fields).map(dumps), JSON_VALUES.map(dumps),
                    st.sampled_from(["a: [1, 2", "!!python/object:os.system ['ls']", "x: &a [*a]", "- - - -", "key: value\n  bad: indent",
                                     ": :", "\t tab: 1", "a: 1\na: 2"]))
    return doc.flatmap(mangle)


@st.composite
def safetensors_files(draw: st.DrawFn) -> bytes:
    """A safetensors file with a random, malformed or hostile header (and maybe a valid tiny tensor)."""
    kind = draw(st.sampled_from(["random", "huge_len", "bad_json", "meta", "shape", "truncated"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "huge_len":
        return struct.pack("<Q", draw(st.integers(2**40, 2**64 - 1))) + b"{}"
    if kind == "bad_json":
        body = draw(st.binary(max_size=100))
        return struct.pack("<Q", len(body)) + body
    meta = draw(st.dictionaries(st.sampled_from(["kind", "layer", "layers", "component", "d_model", "format", "axes", "x"]),
                                st.text(max_size=20) | st.sampled_from(["1e400", "nan", "-1", "[]", "{}", "mac", "addition",
                                                                         "A" * 100_000]), max_size=5))
    names = draw(st.lists(st.sampled_from(["direction", "vector", "axes", "nudge", "w"]), max_size=2, unique=True))
    header: dict[str, Any] = {"__metadata__": meta}
    data = b""
    for name in names:
        dtype = draw(st.sampled_from(["F32", "F16", "I64", "BOOL", "XX"]))
        shape = draw(st.lists(st.integers(0, 4), max_size=3)) if kind != "shape" else [draw(st.integers(-3, 2**40))]
        n = 4 * max(1, math.prod(shape)) if kind != "shape" else 8
        start = len(data)
        data += draw(st.sampled_from([b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x3f"])) * (n // 4)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [start, len(data)]}
    head = json.dumps(header).encode()
    out = struct.pack("<Q", len(head)) + head + data
    if kind == "truncated":
        out = out[: draw(st.integers(0, len(out)))]
    return out
