"""The shared record readers and the CSV writer, checked against hand-written expectations and the stdlib."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest

from alignscope.circuits.pairs import load_pairs, load_trace_items
from alignscope.data.axioms import read_litmus
from alignscope.data.bias import read_bbq
from alignscope.data.facts import load_facts
from alignscope.data.public import load_hh_rlhf
from alignscope.data.refusal_pairs import load_refusal_pairs
from alignscope.data.training.mixes import honest_items, refusal_styles
from alignscope.dilemmas.schema import load_dilemmas
from alignscope.errors import InputError
from alignscope.tables import parse_csv, parse_json, parse_jsonl, read_csv, read_json, read_jsonl, read_records, read_text, write_csv


def write(path: Path, data: str | bytes) -> Path:
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def test_read_text_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.txt: widget file does not exist"):
        read_text(tmp_path / "nope.txt", what="widget file")
    with pytest.raises(InputError, match=r"e\.txt: the file is empty; expected words"):
        read_text(write(tmp_path / "e.txt", " \n\t\n"), empty="expected words")
    with pytest.raises(InputError, match=r"u\.txt, line 3: invalid UTF-8 at byte 5"):
        read_text(write(tmp_path / "u.txt", b"a\nb\nc\xffd\n"))
    with pytest.raises(InputError, match=r"g\.gz: not a valid gzip file"):
        read_text(write(tmp_path / "g.gz", b"not gzip"))


def test_read_text_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "locked.txt", "x")

    def deny(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(InputError, match=r"locked\.txt: cannot read phrase file: Permission denied"):
        read_text(path, what="phrase file")


def test_read_text_drops_bom_and_gunzips(tmp_path: Path) -> None:
    assert read_text(write(tmp_path / "b.txt", b"\xef\xbb\xbfhi\n")) == "hi\n"
    assert read_text(write(tmp_path / "z.jsonl.gz", gzip.compress("héllo\n".encode()))) == "héllo\n"


def test_parse_json_reports_line_and_column() -> None:
    text = '[\n  {"a": 1},\n  {"a": }\n]'
    with pytest.raises(json.JSONDecodeError) as ref:
        json.loads(text)
    with pytest.raises(InputError) as err:
        parse_json(text, "x.json")
    assert str(err.value) == f"x.json, line {ref.value.lineno}: invalid JSON: {ref.value.msg} (column {ref.value.colno})"
    assert ref.value.lineno == 3
    assert parse_json('{"k": [1, 2]}', "y.json") == {"k": [1, 2]}


def test_parse_jsonl_line_numbers_blank_lines_crlf_and_line_separators() -> None:
    text = '{"a": 1}\r\n\r\n   \n{"a": "x\u2028y\x85z"}\n[1]\n'
    assert list(parse_jsonl(text, "p.jsonl")) == [(1, {"a": 1}), (4, {"a": "x\u2028y\x85z"}), (5, [1])]
    with pytest.raises(InputError) as err:
        list(parse_jsonl('{"a": 1}\n\n{"a": 1,}\n', "p.jsonl"))
    with pytest.raises(json.JSONDecodeError) as ref:
        json.loads('{"a": 1,}')
    assert str(err.value) == f"p.jsonl, line 3: invalid JSON: {ref.value.msg} (column {ref.value.colno})"


def test_parse_jsonl_is_lazy() -> None:
    records = parse_jsonl('{"a": 1}\nnot json\n', "p.jsonl")
    assert next(records) == (1, {"a": 1})  # the bad second line is not parsed yet
    with pytest.raises(InputError, match="line 2: invalid JSON"):
        next(records)


def test_parse_csv_matches_the_stdlib_with_physical_line_numbers() -> None:
    text = ' a , b\n1,2\n"multi\nline",3\n\n4,5\n'
    rows = parse_csv(text, "t.csv")
    reference = list(csv.reader(io.StringIO(text)))
    assert [list(r.values()) for _, r in rows] == [r for r in reference[1:] if r]
    assert [list(r) for _, r in rows] == [["a", "b"]] * 3  # header names stripped
    assert [n for n, _ in rows] == [2, 4, 6]  # the multi-line cell ends on line 4; the blank line 5 is skipped
    tsv = parse_csv("prompt\tlabel\nhi there\tx\n", "t.tsv", delimiter="\t")
    assert tsv == [(2, {"prompt": "hi there", "label": "x"})]


def test_parse_csv_missing_columns() -> None:
    with pytest.raises(InputError) as err:
        parse_csv("x,y\n1,2\n", "t.csv", required=("prompt",))
    assert str(err.value) == "t.csv, line 1, field 'prompt': missing required column; header has ['x', 'y']"
    with pytest.raises(InputError, match="field 'b'.*required columns: x, b"):
        parse_csv("x,y\n1,2\n", "t.csv", required=("x", "b"))


def test_read_wrappers(tmp_path: Path) -> None:
    assert read_json(write(tmp_path / "a.json", '{"n": 1}')) == {"n": 1}
    assert list(read_jsonl(write(tmp_path / "a.jsonl", '{"n": 1}\n\n{"n": 2}\n'))) == [(1, {"n": 1}), (3, {"n": 2})]
    assert read_csv(write(tmp_path / "a.csv", "n\n1\n"), required=("n",)) == [(2, {"n": "1"})]
    with pytest.raises(InputError, match=r"e\.jsonl: the file is empty; expected one JSON object per line"):
        read_jsonl(write(tmp_path / "e.jsonl", "\n"))  # raised at the call, before any iteration
    with pytest.raises(InputError, match=r"m\.csv: table does not exist"):
        read_csv(tmp_path / "m.csv", what="table")


def test_read_records_matches_plain_json(tmp_path: Path) -> None:
    lines = ['{"a": 1, "b": [1, 2]}', "", "  ", '{"s": "x\u2028y"}', '{"n": null}']
    path = write(tmp_path / "r.jsonl", b"\xef\xbb\xbf" + "\n".join(lines).encode("utf-8") + b"\n")
    reference = [(i, json.loads(line)) for i, line in enumerate(lines, start=1) if line.strip()]
    assert list(read_records(path)) == reference
    assert [n for n, _ in reference] == [1, 4, 5]


@pytest.mark.parametrize(("value", "kind"), [("[1]", "list"), ('"s"', "str"), ("3", "int"), ("null", "NoneType")])
def test_read_records_rejects_a_line_that_is_not_an_object(tmp_path: Path, value: str, kind: str) -> None:
    path = write(tmp_path / "r.jsonl", '{"a": 1}\n\n' + value + "\n")
    records = read_records(path, expected="a JSON object with fields a")
    assert next(records) == (1, {"a": 1})  # lazy: the bad line raises only when reached
    with pytest.raises(InputError) as err:
        next(records)
    assert str(err.value) == f"{path}, line 3: expected a JSON object with fields a, got {kind}"


def test_read_records_file_errors_are_raised_at_the_call(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"m\.jsonl: widget file does not exist"):
        read_records(tmp_path / "m.jsonl", what="widget file")
    with pytest.raises(InputError, match=r"u\.jsonl, line 2: invalid UTF-8 at byte 9"):
        read_records(write(tmp_path / "u.jsonl", b'{"a": 1}\n\xff\n'))
    with pytest.raises(InputError, match=r"b\.jsonl, line 2: invalid JSON"):
        list(read_records(write(tmp_path / "b.jsonl", '{"a": 1}\n{"a"\n')))


JSONL_READERS = [load_pairs, load_refusal_pairs, load_dilemmas, load_facts, read_bbq, load_hh_rlhf, read_litmus,
                 refusal_styles, honest_items]


@pytest.mark.parametrize("reader", JSONL_READERS, ids=lambda r: r.__name__)
def test_jsonl_readers_name_file_and_line_of_a_non_object(tmp_path: Path, reader: Any) -> None:
    path = write(tmp_path / "x.jsonl", "\n[1, 2]\n")
    with pytest.raises(InputError) as err:
        reader(path)
    assert str(err.value).startswith(f"{path}, line 2: expected a")
    assert str(err.value).endswith(", got list")


def test_write_csv_exact_bytes_and_round_trip(tmp_path: Path) -> None:
    rows = [{"a": 1, "b": "x,y"}, {"b": 'say "hi"\nthen', "c": None, "a": 2.5}]
    path = write_csv(tmp_path / "sub" / "o.csv", rows)
    assert path == tmp_path / "sub" / "o.csv"
    assert path.read_bytes() == b'a,b,c\n1,"x,y",\n2.5,"say ""hi""\nthen",\n'
    with path.open(newline="", encoding="utf-8") as fh:
        back = list(csv.DictReader(fh))
    assert back == [{"a": "1", "b": "x,y", "c": ""}, {"a": "2.5", "b": 'say "hi"\nthen', "c": ""}]
    assert [p.name for p in path.parent.iterdir()] == ["o.csv"]  # no temp file left behind


def test_write_csv_columns_and_empty(tmp_path: Path) -> None:
    fixed = write_csv(tmp_path / "f.csv", [{"b": 2, "a": 1, "extra": 9}], ["a", "b"])
    assert fixed.read_text(encoding="utf-8") == "a,b\n1,2\n"
    assert write_csv(tmp_path / "h.csv", [], ["a", "b"]).read_text(encoding="utf-8") == "a,b\n"
    assert write_csv(tmp_path / "e.csv", []).read_bytes() == b""


def test_pair_and_trace_files_use_the_shared_errors(tmp_path: Path) -> None:
    good = {"clean": "a", "corrupt": "b", "answer": " x", "foil": " y"}
    path = write(tmp_path / "p.jsonl", json.dumps(good) + "\n\n{bad\n")
    with pytest.raises(InputError, match=r"p\.jsonl, line 3: invalid JSON: .* \(column 2\)"):
        load_pairs(path)
    with pytest.raises(InputError, match=r"q\.jsonl: pair file does not exist"):
        load_pairs(tmp_path / "q.jsonl")
    write(path, json.dumps({**good, "foil": ""}) + "\n")
    with pytest.raises(InputError, match=r"p\.jsonl, line 1, field 'foil'"):
        load_pairs(path)
    listed = write(tmp_path / "t.json", json.dumps([{"prompt": "P", "subject": "S"}, {"prompt": "P"}]))
    with pytest.raises(InputError) as err:
        load_trace_items(listed)
    assert str(err.value) == f"{listed}, field 'subject': item 2: missing or empty string field"
    lines = write(tmp_path / "t.jsonl", json.dumps({"prompt": "P", "subject": "S", "known_id": 7}) + "\n\n[1]\n")
    with pytest.raises(InputError, match=r"t\.jsonl, line 3: expected an object"):
        load_trace_items(lines)
    write(lines, json.dumps({"prompt": "P", "subject": "S", "known_id": 7}) + "\n")
    assert load_trace_items(lines)[0].id == "7"
