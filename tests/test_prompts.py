from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignscope.data.prompts import PromptSet, load_prompts
from alignscope.errors import InputError


def write(path: Path, data: str | bytes) -> Path:
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def test_jsonl_json_csv_agree(tmp_path: Path) -> None:
    records = [{"prompt": "a b", "label": "harmful", "category": "cyber", "id": "x1"}, {"prompt": "c, \"d\""}]
    jl = write(tmp_path / "p.jsonl", "\n".join(json.dumps(r) for r in records) + "\n\n")
    js = write(tmp_path / "p.json", json.dumps(records))
    wrapped = write(tmp_path / "w.json", json.dumps({"prompts": records}))
    cs = write(tmp_path / "p.csv", 'prompt,label,category,id\na b,harmful,cyber,x1\n"c, ""d""",,,\n')
    sets = [load_prompts(p) for p in (jl, js, wrapped, cs)]
    for s in sets:
        assert s.records() == sets[0].records()
        assert s.content_hash() == sets[0].content_hash()
    assert sets[0][0].label == "harmful" and sets[0][1].label is None
    assert sets[0].filter(label="harmful").texts == ["a b"]


def test_missing_prompt_field_names_file_line_and_field(tmp_path: Path) -> None:
    p = write(tmp_path / "bad.jsonl", '{"prompt": "ok"}\n{"text": "no prompt"}\n')
    with pytest.raises(InputError) as err:
        load_prompts(p)
    msg = str(err.value)
    assert "bad.jsonl" in msg and "line 2" in msg and "'prompt'" in msg and "text" in msg


def test_invalid_json_line(tmp_path: Path) -> None:
    p = write(tmp_path / "bad.jsonl", '{"prompt": "ok"}\n{"prompt": \n')
    with pytest.raises(InputError, match=r"bad\.jsonl, line 2: invalid JSON"):
        load_prompts(p)


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="empty"):
        load_prompts(write(tmp_path / "e.jsonl", "  \n"))


def test_missing_csv_column(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        load_prompts(write(tmp_path / "c.csv", "text,label\nhello,x\n"))
    assert "line 1" in str(err.value) and "'prompt'" in str(err.value) and "['text', 'label']" in str(err.value)


def test_csv_row_error_reports_physical_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="line 3"):
        load_prompts(write(tmp_path / "c.csv", "prompt\nfine\n\"\"\n"))


def test_invalid_utf8_names_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"line 2: invalid UTF-8"):
        load_prompts(write(tmp_path / "u.jsonl", b'{"prompt": "ok"}\n{"prompt": "\xff\xfe"}\n'))


def test_empty_prompt_string_and_wrong_types(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="non-empty string"):
        load_prompts(write(tmp_path / "a.jsonl", '{"prompt": "   "}\n'))
    with pytest.raises(InputError, match="field 'label'"):
        load_prompts(write(tmp_path / "b.jsonl", '{"prompt": "x", "label": [1]}\n'))
    with pytest.raises(InputError, match="item 1"):
        load_prompts(write(tmp_path / "c.json", '["just a string"]'))


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unsupported extension"):
        load_prompts(write(tmp_path / "p.txt", "hello"))
    with pytest.raises(InputError, match="does not exist"):
        load_prompts(tmp_path / "nope.jsonl")


def test_custom_prompt_field(tmp_path: Path) -> None:
    p = write(tmp_path / "adv.csv", "goal,target\nDo X,Sure\n")
    assert load_prompts(p, prompt_field="goal").texts == ["Do X"]


def test_promptset_slicing_and_concat() -> None:
    a = PromptSet.from_texts(["x", "y"], label="harmless")
    b = PromptSet.from_texts(["z"], label="harmful")
    both = a + b
    assert both.texts == ["x", "y", "z"]
    assert both[1:].labels == ["harmless", "harmful"]
