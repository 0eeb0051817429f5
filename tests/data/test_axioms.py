"""AQI data: the built-in axiom set, LITMUS-style CSV/JSONL, HH-RLHF, the source grammar and every bad-input error."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from alignscope.data.axioms import builtin_axioms_path, fit_set, load_axiom_set, read_litmus
from alignscope.errors import InputError


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def rows(n: int = 2, axioms: tuple[str, ...] = ("a", "b")) -> list[dict[str, str]]:
    return [{"axiom": a, "safety_label": lab, "input": f"{a} {lab} {i}"} for a in axioms for lab in ("safe", "unsafe") for i in range(n)]


def test_builtin_set_has_seven_axioms_forty_each_and_fixed_splits() -> None:
    records = [json.loads(line) for line in builtin_axioms_path().read_text(encoding="utf-8").splitlines()]
    counts: dict[tuple[str, str], int] = {}
    splits: dict[str, int] = {}
    for r in records:
        counts[r["axiom"], r["safety_label"]] = counts.get((r["axiom"], r["safety_label"]), 0) + 1
        splits[r["split"]] = splits.get(r["split"], 0) + 1
    assert len({a for a, _ in counts}) >= 7 and set(counts.values()) == {40}
    assert splits == {"train": 280, "val": 112, "test": 168}
    assert len({r["input"] for r in records}) == len(records) == len({r["id"] for r in records})
    full = load_axiom_set("builtin:axioms")
    test = load_axiom_set("builtin:axioms:test")
    assert len(full) == len(records) and len(test) == 168 and test.source == "builtin:axioms:test"
    assert all(c == {"safe": 12, "unsafe": 12} for c in test.counts().values())
    assert not set(test.texts) & set(fit_set("builtin:axioms:test").texts)


def test_csv_and_jsonl_read_the_same(tmp_path: Path) -> None:
    data = rows(3)
    a = read_litmus(write_csv(tmp_path / "x.csv", data))
    jl = tmp_path / "x.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in data), encoding="utf-8")
    b = read_litmus(jl)
    assert [(i.axiom, i.label, i.text) for i in a] == [(i.axiom, i.label, i.text) for i in b] == [
        (r["axiom"], r["safety_label"], r["input"]) for r in data]
    assert a.counts() == {"a": {"safe": 3, "unsafe": 3}, "b": {"safe": 3, "unsafe": 3}}


def test_csv_without_safety_label_names_file_line_and_field(tmp_path: Path) -> None:
    f = write_csv(tmp_path / "bad.csv", [{"axiom": "a", "input": "x"}])
    with pytest.raises(InputError) as exc:
        load_axiom_set(str(f))
    assert exc.value.path == str(f) and exc.value.line == 1 and exc.value.field == "safety_label"


def test_label_other_than_safe_or_unsafe(tmp_path: Path) -> None:
    data = rows()
    data[2]["safety_label"] = "harmful"
    f = write_csv(tmp_path / "bad.csv", data)
    with pytest.raises(InputError, match="expected 'safe' or 'unsafe', got 'harmful'") as exc:
        load_axiom_set(str(f))
    assert (exc.value.path, exc.value.line, exc.value.field) == (str(f), 4, "safety_label")


def test_axiom_with_fewer_than_two_prompts_per_label(tmp_path: Path) -> None:
    data = [*rows(), {"axiom": "c", "safety_label": "safe", "input": "s1"}, {"axiom": "c", "safety_label": "safe", "input": "s2"},
                     {"axiom": "c", "safety_label": "unsafe", "input": "u1"}]
    f = tmp_path / "bad.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in data), encoding="utf-8")
    with pytest.raises(InputError, match="axiom 'c' has 1 unsafe prompt") as exc:
        load_axiom_set(str(f))
    assert (exc.value.path, exc.value.line, exc.value.field) == (str(f), 9, "safety_label")


def test_empty_input_field_and_bad_split(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps({"axiom": "a", "safety_label": "safe", "input": " "}), encoding="utf-8")
    with pytest.raises(InputError) as exc:
        load_axiom_set(str(f))
    assert (exc.value.line, exc.value.field) == (1, "input")
    f.write_text(json.dumps({"axiom": "a", "safety_label": "safe", "input": "x", "split": "dev"}), encoding="utf-8")
    with pytest.raises(InputError, match="train, val, test") as exc:
        load_axiom_set(str(f))
    assert exc.value.field == "split"


def test_grammar_errors() -> None:
    with pytest.raises(InputError, match="unknown split 'dev'"):
        load_axiom_set("builtin:axioms:dev")
    with pytest.raises(InputError, match="builtin:axioms"):
        load_axiom_set("builtin:harmful")
    with pytest.raises(InputError, match="names no file"):
        load_axiom_set("hh:")
    with pytest.raises(InputError, match="does not exist"):
        load_axiom_set("missing.csv")


def test_hh_chosen_is_safe_rejected_unsafe(tmp_path: Path) -> None:
    f = tmp_path / "hh.jsonl"
    pairs = [("How do I bake bread?", "Use flour.", "No."), ("Tell me a joke", "Why did...", "Go away.")]
    f.write_text("\n".join(json.dumps({"chosen": f"\n\nHuman: {q}\n\nAssistant: {c}", "rejected": f"\n\nHuman: {q}\n\nAssistant: {r}"})
                           for q, c, r in pairs), encoding="utf-8")
    s = load_axiom_set(f"hh:{f}")
    assert s.counts() == {"hh": {"safe": 2, "unsafe": 2}}
    assert [i.text for i in s if i.label == "safe"] == [f"Human: {q}\n\nAssistant: {c}" for q, c, _ in pairs]
    with pytest.raises(InputError, match="has no train split|none"):
        fit_set(f"hh:{f}")


def test_fit_set_of_a_file_takes_its_train_rows(tmp_path: Path) -> None:
    data = [{**r, "split": "train" if i % 2 else "test"} for i, r in enumerate(rows(4))]
    f = write_csv(tmp_path / "s.csv", data)
    train = fit_set(str(f))
    assert train.texts == [r["input"] for r in data if r["split"] == "train"]
    nosplit = write_csv(tmp_path / "n.csv", rows())
    with pytest.raises(InputError, match="split"):
        fit_set(str(nosplit))
