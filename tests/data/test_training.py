"""Training data: the built-in mixes, the public-format loaders and the training-source grammar."""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
import types
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import pytest

from alignscope.data.builtin_sets import load_builtin
from alignscope.data.training import (
    MIXES,
    Example,
    MCItem,
    TrainingSource,
    hash_split,
    honest_items,
    load_alpaca,
    load_beavertails,
    load_hh_examples,
    load_honest_mc,
    load_mix,
    load_mixes,
    load_training_source,
    load_truthfulqa_csv,
    parse_training_source,
    read_mc_task,
    refusal_for,
    refusal_styles,
)
from alignscope.errors import InputError
from alignscope.evals.refusal import DEFAULT_REFUSAL_PHRASES, phrase_detector

SHARED = Path("/work/shared/data")


def _sha_id(prefix: str, text: str) -> str:
    return f"{prefix}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}"


# ---------------------------------------------------------------- built-in mixes


def test_refusal_styles_are_many_and_all_detected_at_the_start() -> None:
    styles = refusal_styles()
    assert len(styles) >= 5 and all(len(set(texts)) >= 8 for texts in styles.values())
    detect = phrase_detector()
    phrases = [p.lower() for p in DEFAULT_REFUSAL_PHRASES]
    for texts in styles.values():
        for text in texts:
            assert detect(text), text
            assert any(text.lower().startswith(p) for p in phrases), text
            assert text.count(".") + text.count(";") <= 3


def test_refusals_mix_follows_the_builtin_harmful_splits() -> None:
    for split in ("train", "val", "test"):
        ts = load_mix("refusals", split)
        prompts = load_builtin("harmful", split=split)
        assert [e.prompt for e in ts] == prompts.texts and [e.id for e in ts] == [p.id for p in prompts]
        assert {e.split for e in ts} == {split} and {e.mix for e in ts} == {"refusals"}
    test_prompts = set(load_builtin("harmful", split="test").texts)
    assert not test_prompts & set(load_mix("refusals").prompts)  # the default split is train
    every = load_mix("refusals", None)
    assert len(every) == len(load_builtin("harmful")) == 494
    styles = refusal_styles()
    detect = phrase_detector()
    for e in every:
        assert e.style in styles and e.response in styles[e.style] and detect(e.response or "")
    assert len(Counter(e.style for e in every)) == len(styles)


def test_refusal_pairing_is_deterministic_and_seeded() -> None:
    a, b = load_mix("refusals", None), load_mix("refusals", None)
    assert list(a) == list(b)
    other = load_mix("refusals", None, seed=1)
    assert [e.id for e in other] == [e.id for e in a] and [e.response for e in other] != [e.response for e in a]
    # the rule, recomputed by hand: style = sorted styles[sha256("0:style:ID") % n], text likewise
    styles = refusal_styles()
    names = sorted(styles)
    pick = lambda key, n: int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % n  # noqa: E731
    style = names[pick("0:style:harmful-001", len(names))]
    assert refusal_for("harmful-001") == (style, styles[style][pick("0:text:harmful-001", len(styles[style]))])


def test_helpful_mix_is_self_distilled_builtin_harmless_and_lookalike() -> None:
    for split, n in (("train", 288 + 186), ("val", 96 + 70), ("test", 176 + 116)):
        assert n == len(load_builtin("harmless", split)) + len(load_builtin("lookalike", split))
        ts = load_mix("helpful", split)
        assert len(ts) == n and all(e.response is None for e in ts) and {e.split for e in ts} == {split}
    assert load_mix("helpful").prompts == load_builtin("harmless", "train").texts + load_builtin("lookalike", "train").texts


def test_honest_set_shape_and_splits() -> None:
    items = honest_items()
    assert len(items) >= 120 and len({i.id for i in items}) == len(items)
    assert len({i.question for i in items}) == len(items)
    assert len({i.category for i in items}) >= 6
    counts = Counter(i.split for i in items)
    assert counts["train"] / len(items) == pytest.approx(0.5, abs=0.05)
    assert counts["val"] / len(items) == pytest.approx(0.2, abs=0.05)
    assert counts["test"] / len(items) == pytest.approx(0.3, abs=0.05)
    for i in items:
        assert 1 <= len(i.true_answers) <= 2 and 3 <= len(i.false_answers) <= 4
        assert len({i.answer, *i.true_answers, *i.false_answers}) == 1 + len(i.true_answers) + len(i.false_answers)
    ts = load_mix("honest", "test")
    assert [e.prompt for e in ts] == [i.question for i in items if i.split == "test"]
    assert [e.response for e in ts] == [i.answer for i in items if i.split == "test"]


def test_honest_mc_layout() -> None:
    items = {i.id: i for i in honest_items()}
    mc = load_honest_mc("val")
    assert len(mc) == sum(i.split == "val" for i in items.values())
    for m in mc:
        i = items[m.id or ""]
        assert m.question == i.question and m.mc1_correct_index == 0
        assert m.mc1_choices == (i.answer, *i.false_answers)
        assert m.mc2_choices == (i.answer, *i.true_answers, *i.false_answers)
        assert m.mc2_labels == tuple([1] * (1 + len(i.true_answers)) + [0] * len(i.false_answers))


def test_no_test_prompt_is_trained_on_and_ids_do_not_cross_splits() -> None:
    train = load_mixes(list(MIXES), "train")
    held = load_mixes(list(MIXES), "val") + load_mixes(list(MIXES), "test")
    assert not set(train.prompts) & set(held.prompts)
    assert not {e.id for e in train} & {e.id for e in held}
    every = load_mixes(list(MIXES), None)
    assert len({e.id for e in every}) == len(every) == len(train) + len(held)
    assert len(train.filter(mix="honest")) == len(load_mix("honest")) and len(every.filter(split="val")) == len(load_mixes(list(MIXES), "val"))


@pytest.mark.skipif(not (SHARED / "truthfulqa").is_dir(), reason="shared TruthfulQA copy absent")
def test_honest_questions_are_not_truthfulqa_questions() -> None:
    import csv
    norm = lambda s: " ".join(s.lower().replace("?", "").split())  # noqa: E731
    theirs = set()
    for f in (SHARED / "truthfulqa/TruthfulQA.csv", SHARED / "truthfulqa/v1/TruthfulQA.csv"):
        with f.open(encoding="utf-8-sig") as fh:
            theirs |= {norm(r["Question"]) for r in csv.DictReader(fh)}
    assert not {norm(i.question) for i in honest_items()} & theirs


@pytest.mark.parametrize(("call", "message"), [
    (lambda: load_mix("harmful"), "unknown training mix 'harmful'; valid mixes: refusals, helpful, honest"),
    (lambda: load_mix("honest", "dev"), "unknown split 'dev'; valid splits: train, val, test"),
    (lambda: load_mixes([]), "no training mix given; valid mixes: refusals, helpful, honest"),
    (lambda: load_honest_mc("dev"), "unknown split 'dev'"),
])
def test_mix_errors(call: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        call()


def test_malformed_honest_and_style_files(tmp_path: Path) -> None:
    f = tmp_path / "h.jsonl"
    good = {"id": "a", "question": "q?", "answer": "t", "true_answers": ["t2"], "false_answers": ["f"], "category": "c", "split": "train"}
    f.write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": "b", "false_answers": []}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"h\.jsonl, line 2, field 'false_answers': expected a non-empty list"):
        honest_items(f)
    f.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"line 2, field 'id': duplicate id 'a'"):
        honest_items(f)
    s = tmp_path / "s.jsonl"
    s.write_text('{"style": "x", "text": ""}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"s\.jsonl, line 1, field 'text': expected a non-empty string"):
        refusal_styles(s)


# ---------------------------------------------------------------- public formats


def test_hash_split_is_sha256_buckets() -> None:
    for key in ("a", "alpaca-0", "x" * 50):
        bucket = int(hashlib.sha256(key.encode()).hexdigest()[:16], 16) % 100
        assert hash_split(key) == ("train" if bucket < 80 else "val" if bucket < 90 else "test")
    counts = Counter(hash_split(f"k{i}") for i in range(2000))
    assert 1500 < counts["train"] < 1700 and 120 < counts["val"] < 280


def test_load_alpaca(tmp_path: Path) -> None:
    f = tmp_path / "alpaca.json"
    f.write_text(json.dumps([
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
        {"instruction": "Say hi.", "input": "", "output": "Hi!"},
        {"instruction": "Say hi.", "output": "Hello!", "split": "test"},
    ]), encoding="utf-8")
    ts = load_alpaca(f)
    hid = _sha_id("alpaca", "Say hi.")
    assert list(ts) == [
        Example("Add the numbers.\n\n2 and 3", "5", "alpaca", None, None, _sha_id("alpaca", "Add the numbers.\n\n2 and 3"),
                hash_split(_sha_id("alpaca", "Add the numbers.\n\n2 and 3"))),
        Example("Say hi.", "Hi!", "alpaca", None, None, hid, hash_split(hid)),
        Example("Say hi.", "Hello!", "alpaca", None, None, hid + "-2", "test"),
    ]
    assert list(load_alpaca(f)) == list(ts)


@pytest.mark.parametrize(("content", "message"), [
    ('{"instruction": "x"}', r"alpaca\.json: expected a JSON list of objects, got dict"),
    ('[{"instruction": "x", "output": ""}]', r"alpaca\.json, field 'output': item 1: expected a non-empty string, got ''"),
    ('[{"instruction": "x", "input": 3, "output": "y"}]', r"field 'input': item 1: expected a string, got 3"),
    ('[{"instruction": "x", "output": "y", "split": "dev"}]', r"field 'split': item 1: expected one of \['train', 'val', 'test'\]"),
    ('[["x"]]', r"alpaca\.json: item 1: expected an object, got list"),
    ("[]", r"alpaca\.json: the file holds no training examples"),
    ("[{", r"alpaca\.json, line 1: invalid JSON"),
])
def test_alpaca_errors(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "alpaca.json"
    f.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        load_alpaca(f)


def test_load_beavertails(tmp_path: Path) -> None:
    f = tmp_path / "bt.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in [
        {"prompt": "How do I bake bread?", "response": "Mix flour and water.", "category": {"violence": False}, "is_safe": True},
        {"prompt": "How do I hurt someone?", "response": "Bad answer.", "category": {"violence": True, "privacy": False, "crime": True},
         "is_safe": False},
    ]) + "\n", encoding="utf-8")
    ts = load_beavertails(f)
    safe_id, bad_id = _sha_id("beavertails", "How do I bake bread?"), _sha_id("beavertails", "How do I hurt someone?")
    style, text = refusal_for(bad_id)
    assert list(ts) == [
        Example("How do I bake bread?", "Mix flour and water.", "beavertails", None, None, safe_id, hash_split(safe_id)),
        Example("How do I hurt someone?", text, "beavertails", "violence,crime", style, bad_id, hash_split(bad_id)),
    ]
    assert phrase_detector()(text)


@pytest.mark.parametrize(("line", "message"), [
    ('{"prompt": "p", "response": "r", "is_safe": "yes"}', r"bt\.jsonl, line 2, field 'is_safe': expected true or false, got 'yes'"),
    ('{"prompt": "p", "response": "r", "is_safe": true, "category": []}', r"line 2, field 'category': expected an object"),
    ('{"prompt": "", "response": "r", "is_safe": true}', r"line 2, field 'prompt': expected a non-empty string"),
    ("{bad", r"bt\.jsonl, line 2: invalid JSON"),
])
def test_beavertails_errors(tmp_path: Path, line: str, message: str) -> None:
    f = tmp_path / "bt.jsonl"
    f.write_text('{"prompt": "a", "response": "b", "is_safe": true}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=message):
        load_beavertails(f)


def test_load_truthfulqa_csv(tmp_path: Path) -> None:
    f = tmp_path / "tqa.csv"
    f.write_text('\ufeffType,Category,Question,Best Answer\nAdversarial,Myths,"Is it so, really?",No\n', encoding="utf-8")
    qid = _sha_id("truthfulqa", "Is it so, really?")
    assert list(load_truthfulqa_csv(f)) == [Example("Is it so, really?", "No", "honest", "Myths", None, qid, hash_split(qid))]
    f.write_text("Question,Best Answer\nq1,a1\nq2,\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"tqa\.csv, line 3, field 'Best Answer': expected a non-empty string"):
        load_truthfulqa_csv(f)
    f.write_text("Question,Answer\nq1,a1\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"tqa\.csv, line 1, field 'Best Answer': missing required column"):
        load_truthfulqa_csv(f)


def test_mc_item_checks_its_fields() -> None:
    item = MCItem("q", ["a", "b"], 1, ["a", "b"], [0, 1])  # lists are stored as tuples
    assert (item.mc1_choices, item.mc2_choices, item.mc2_labels) == (("a", "b"), ("a", "b"), (0, 1))
    assert MCItem("q", ("a",), 0, ("a",), (1,)).mc1_correct_index == 0
    for args, message in [
        (((), 0, ("a",), (1,)), "field 'mc1_choices': expected at least one MC1 choice"),
        ((("a", "b"), 2, ("a",), (1,)), "field 'mc1_correct_index': expected an int from 0 to 1, got 2"),
        ((("a", "b"), -1, ("a",), (1,)), "field 'mc1_correct_index': expected an int from 0 to 1, got -1"),
        ((("a", "b"), True, ("a",), (1,)), "field 'mc1_correct_index': expected an int from 0 to 1, got True"),
        ((("a",), 0, (), ()), "field 'mc2_choices': expected at least one MC2 choice"),
        ((("a",), 0, ("a",), (1, 0)), "field 'mc2_labels': 2 labels for 1 choices"),
        ((("a",), 0, ("a", "b"), (1, 2)), "field 'mc2_labels': expected labels 0 or 1, got [1, 2]"),
        ((("a",), 0, ("a", "b"), (True, 0)), "field 'mc2_labels': expected labels 0 or 1, got [True, 0]"),
        ((("a",), 0, ("a", "b"), (1.0, 0)), "field 'mc2_labels': expected labels 0 or 1, got [1.0, 0]"),
        ((("a",), 0, ("a", "b"), (0, 0)), "field 'mc2_labels': expected at least one true (1) MC2 answer"),
    ]:
        with pytest.raises(InputError) as err:
            MCItem("q", *args)  # type: ignore[arg-type]
        assert str(err.value) == message


def _mc_task(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "mc_task.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


MC_GOOD = {"question": "Q?", "mc1_targets": {"w1": 0, "right": 1, "w2": 0}, "mc2_targets": {"t": 1, "f": 0, "t2": 1}}


def test_read_mc_task_keeps_file_order(tmp_path: Path) -> None:
    path = _mc_task(tmp_path, [MC_GOOD, {**MC_GOOD, "question": "R?", "mc1_targets": {"right": 1, "w": 0}, "mc0_targets": {"x": 1}}])
    assert read_mc_task(path) == [MCItem("Q?", ("w1", "right", "w2"), 1, ("t", "f", "t2"), (1, 0, 1), "truthfulqa-1"),
                                  MCItem("R?", ("right", "w"), 0, ("t", "f", "t2"), (1, 0, 1), "truthfulqa-2")]


# Items are numbered from 1, as load_alpaca numbers them (and as the ids truthfulqa-N are).
@pytest.mark.parametrize(("data", "message"), [
    ({"question": "Q?"}, "expected a non-empty JSON list"),
    ([], "expected a non-empty JSON list"),
    ([MC_GOOD, "text"], "item 2: expected an object"),
    ([{**MC_GOOD, "question": " "}], "field 'question': item 1: expected a non-empty string"),
    ([MC_GOOD, {k: v for k, v in MC_GOOD.items() if k != "question"}], "field 'question': item 2"),
    ([{**MC_GOOD, "mc1_targets": {"a": 1, "b": 1}}], "field 'mc1_targets': item 1: expected exactly one correct (1) answer, got 2"),
    ([{**MC_GOOD, "mc1_targets": {"a": 0, "b": 0}}], "field 'mc1_targets': item 1: expected exactly one correct (1) answer, got 0"),
    ([{**MC_GOOD, "mc1_targets": ["a", "b"]}], "field 'mc1_targets': item 1: expected a non-empty object"),
    ([{**MC_GOOD, "mc1_targets": {"a": "yes"}}], "field 'mc1_targets': item 1: answer 'a' has label 'yes'"),
    ([MC_GOOD, {**MC_GOOD, "mc2_targets": {"a": 1, "b": 2}}], "field 'mc2_targets': item 2: answer 'b' has label 2"),
    ([{**MC_GOOD, "mc2_targets": {"a": True}}], "field 'mc2_targets': item 1: answer 'a' has label True"),
    ([{**MC_GOOD, "mc2_targets": {"a": 1.0}}], "field 'mc2_targets': item 1: answer 'a' has label 1.0"),
    ([{**MC_GOOD, "mc2_targets": {}}], "field 'mc2_targets': item 1: expected a non-empty object"),
    ([{k: v for k, v in MC_GOOD.items() if k != "mc2_targets"}], "field 'mc2_targets': item 1: expected a non-empty object"),
    ([{**MC_GOOD, "mc2_targets": {"a": 0}}], "field 'mc2_targets': item 1: expected at least one true"),
])
def test_read_mc_task_errors_name_file_item_and_field(tmp_path: Path, data: object, message: str) -> None:
    path = _mc_task(tmp_path, data)
    with pytest.raises(InputError) as err:
        read_mc_task(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_read_mc_task_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_mc_task(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('[{"question": "Q?",\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.json, line 2: invalid JSON"):
        read_mc_task(bad)


def test_load_hh_examples_single_turn_only(tmp_path: Path) -> None:
    f = tmp_path / "hh.jsonl.gz"
    records = [
        {"chosen": "\n\nHuman: Hi there\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi there\n\nAssistant: Go away."},
        {"chosen": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: d",
         "rejected": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: e"},
    ]
    f.write_bytes(gzip.compress("\n".join(json.dumps(r) for r in records).encode("utf-8")))
    ts = load_hh_examples(f)
    hid = _sha_id("hh", "Hi there")
    assert list(ts) == [Example("Hi there", "Hello!", "hh", None, None, hid, hash_split(hid))]
    assert ts.skipped == {"multi_turn": 1, "empty_response": 0}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"chosen": "\\n\\nHuman: x\\n\\nAssistant: y"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.jsonl, line 1, field 'rejected'"):
        load_hh_examples(bad)
    only_multi = tmp_path / "multi.jsonl"
    only_multi.write_text(json.dumps(records[1]) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"multi\.jsonl: the file holds no training examples"):
        load_hh_examples(only_multi)


# ---------------------------------------------------------------- the source grammar


@pytest.mark.parametrize(("spec", "expected"), [
    ("builtin:refusals", TrainingSource("builtin", "refusals")),
    ("builtin:honest:val", TrainingSource("builtin", "honest", "val")),
    ("alpaca:data/a.json", TrainingSource("alpaca", "data/a.json")),
    ("hh:C:/x/y.jsonl.gz", TrainingSource("hh", "C:/x/y.jsonl.gz")),
    ("hf:org/set:test", TrainingSource("hf", "org/set", "test")),
])
def test_training_grammar_round_trips(spec: str, expected: TrainingSource) -> None:
    assert parse_training_source(spec) == expected and str(expected) == spec


@pytest.mark.parametrize(("spec", "fragment"), [
    ("refusals", "expected builtin:MIX"),
    ("csv:x.csv", "expected builtin:MIX"),
    ("alpaca:", "names no file"),
    ("builtin:", "names no set"),
    ("builtin:honest:", "empty split"),
    ("builtin:harmful", "unknown mix 'harmful'; valid mixes: refusals, helpful, honest"),
    ("builtin:honest:dev", "unknown split 'dev'; valid splits: train, val, test"),
])
def test_training_grammar_errors(spec: str, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment) as err:
        parse_training_source(spec)
    assert err.value.field == "source"


def test_load_training_source_dispatches(tmp_path: Path) -> None:
    assert list(load_training_source("builtin:honest:val")) == list(load_mix("honest", "val"))
    assert len(load_training_source("builtin:refusals")) == 494
    f = tmp_path / "a.json"
    f.write_text('[{"instruction": "i", "output": "o"}]', encoding="utf-8")
    assert list(load_training_source(f"alpaca:{f}")) == list(load_alpaca(f))
    with pytest.raises(InputError, match="Alpaca JSON file does not exist"):
        load_training_source(f"alpaca:{tmp_path / 'none.json'}")


def test_hf_without_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(InputError) as err:
        load_training_source("hf:org/set")
    assert str(err.value) == "hf:org/set: hf:org/set needs the optional 'datasets' package and a reachable hub"


def test_hf_through_a_fake_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    class Rows(list[dict[str, Any]]):
        column_names: ClassVar[list[str]] = ["instruction", "input", "output"]

    fake = types.ModuleType("datasets")
    fake.load_dataset = lambda name, split: Rows([{"instruction": "i", "input": "", "output": "o"}])  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", fake)
    ts = load_training_source("hf:org/alpaca")
    assert [(e.prompt, e.response, e.mix) for e in ts] == [("i", "o", "alpaca")] and ts.source == "hf:org/alpaca"
    Rows.column_names = ["text"]
    with pytest.raises(InputError, match=r"the dataset has \['text'\]"):
        load_training_source("hf:org/other")


# ---------------------------------------------------------------- real copies (skipped when absent)


@pytest.mark.skipif(not (SHARED / "truthfulqa/v1").is_dir(), reason="shared TruthfulQA copy absent")
def test_real_truthfulqa_v1() -> None:
    path = SHARED / "truthfulqa/v1/mc_task.json"
    mc = read_mc_task(path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert len(mc) == len(raw) == 817 and all(m.mc1_correct_index == 0 for m in mc)
    for m, rec in zip(mc, raw, strict=True):
        assert m.question == rec["question"]
        assert m.mc1_choices == tuple(rec["mc1_targets"]) and rec["mc1_targets"][m.mc1_choices[m.mc1_correct_index]] == 1
        assert m.mc2_choices == tuple(rec["mc2_targets"]) and m.mc2_labels == tuple(rec["mc2_targets"].values())
        assert set(m.mc2_labels) == {0, 1}
    ts = load_truthfulqa_csv(SHARED / "truthfulqa/v1/TruthfulQA.csv")
    assert len(ts) == 817 and ts[0].prompt == "What happens to you if you eat watermelon seeds?"
    assert len(set(ts.prompts) & {m.question for m in mc}) > 800
    counts = Counter(e.split for e in ts)
    assert 600 < counts["train"] < 710 and counts["val"] > 40 and counts["test"] > 40
    assert len(load_truthfulqa_csv(SHARED / "truthfulqa/TruthfulQA.csv")) == 790


@pytest.mark.skipif(not (SHARED / "hh_rlhf/harmless-base/test.jsonl.gz").is_file(), reason="shared HH-RLHF copy absent")
def test_real_hh_rlhf() -> None:
    ts = load_hh_examples(SHARED / "hh_rlhf/harmless-base/test.jsonl.gz")
    total = len(ts) + sum(ts.skipped.values())
    assert total == 2312 and 300 < len(ts) < 1200
    assert all("Human:" not in e.prompt and e.response for e in ts)
