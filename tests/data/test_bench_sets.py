"""Readers of the bench suites' data: in-house sets, public BBQ/CrowS-Pairs/ROME files, and their errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from alignscope.data.bias import load_bbq, read_bbq, read_crows
from alignscope.data.facts import load_facts, read_known_facts
from alignscope.data.toxic_prompts import load_toxic_prompts
from alignscope.errors import InputError
from alignscope.recipes.bench_data import SUITES, BenchFiles, load_bench_data, parse_suites
from tests.conftest import shared_data

BUILTIN = Path(__file__).resolve().parents[2] / "src" / "alignscope" / "data" / "builtin"


def test_builtin_facts_match_the_file_line_by_line() -> None:
    facts = load_facts()
    raw = [json.loads(line) for line in (BUILTIN / "facts.jsonl").read_text().splitlines() if line.strip()]
    assert len(facts) == len(raw) >= 60
    assert [(f.prompt, f.target, f.subject) for f in facts] == [(r["prompt"], r["target"], r["subject"]) for r in raw]
    assert len({f.id for f in facts}) == len(facts)


def test_facts_errors_name_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "f.jsonl"
    bad.write_text(json.dumps({"subject": "a", "relation": "r", "prompt": "p", "target": "t"}) + "\n"
                   + json.dumps({"subject": "a", "relation": "r", "prompt": "p"}) + "\n")
    with pytest.raises(InputError, match=r"f\.jsonl, line 2, field 'target'"):
        load_facts(bad)


def test_known_facts_reader(tmp_path: Path) -> None:
    f = tmp_path / "known.json"
    f.write_text(json.dumps([{"known_id": 4, "subject": "S", "attribute": "Rome", "prompt": "S is in", "relation_id": "P1"},
                             {"case_id": 5, "subject": "T", "target_true": {"str": "Oslo"}, "prompt": "T is in"}]))
    got = read_known_facts(f)
    assert [(x.id, x.prompt, x.target, x.relation) for x in got] == [("known-4", "S is in", "Rome", "P1"), ("known-5", "T is in", "Oslo", "")]
    f.write_text(json.dumps([{"subject": "S", "prompt": "S is in"}]))
    with pytest.raises(InputError, match=r"known\.json, field '\[0\]\.target_true'"):
        read_known_facts(f)


def test_public_known_1000_reads_every_record() -> None:
    path = shared_data("rome_knowns", "known_1000.json")
    raw = json.loads(path.read_text())
    facts = read_known_facts(path)
    assert len(facts) == len(raw) and facts[0].target == raw[0]["attribute"] and facts[0].prompt == raw[0]["prompt"]


def _bbq_target(rec: dict) -> int | None:
    """Independent statement of the target rule: the non-unknown answer whose group or name is a stereotyped group."""
    wanted = {s.lower() for s in rec["additional_metadata"]["stereotyped_groups"]}
    hits = []
    for i in range(3):
        name, group = rec["answer_info"][f"ans{i}"]
        g = group.lower()
        g = g[2:] if g.startswith(("m-", "f-")) else g
        if g != "unknown" and (g in wanted or name.lower() in wanted):
            hits.append(i)
    return hits[0] if len(hits) == 1 else None


def test_builtin_bbq_fields_and_targets() -> None:
    raw = [json.loads(line) for line in (BUILTIN / "bbq_mini.jsonl").read_text().splitlines() if line.strip()]
    items = load_bbq()
    assert len(items) == len(raw) == 24
    for it, rec in zip(items, raw, strict=True):
        assert it.answers == (rec["ans0"], rec["ans1"], rec["ans2"]) and it.label == rec["label"]
        assert it.condition == rec["context_condition"] and it.polarity == rec["question_polarity"]
        assert it.target_index == _bbq_target(rec) is not None
    assert {it.condition for it in items} == {"ambig", "disambig"}


def test_public_bbq_targets_follow_the_rule() -> None:
    path = shared_data("bbq", "Nationality.jsonl")
    raw = [json.loads(line) for line in path.read_text().splitlines()[:200]]
    items = read_bbq(path, limit=200)
    assert [it.target_index for it in items] == [_bbq_target(r) for r in raw]
    assert all(it.target_index is not None for it in items)


def test_bbq_missing_field_names_file_and_line(tmp_path: Path) -> None:
    rec = json.loads((BUILTIN / "bbq_mini.jsonl").read_text().splitlines()[0])
    bad = tmp_path / "bbq.jsonl"
    broken = {k: v for k, v in rec.items() if k != "question_polarity"}
    bad.write_text(json.dumps(rec) + "\n" + json.dumps(broken) + "\n")
    with pytest.raises(InputError, match=r"bbq\.jsonl, line 2, field 'question_polarity'"):
        read_bbq(bad)
    bad.write_text(json.dumps({**rec, "label": 3}) + "\n")
    with pytest.raises(InputError, match=r"line 1, field 'label'"):
        read_bbq(bad)


def test_crows_reader_matches_csv_and_names_missing_columns(tmp_path: Path) -> None:
    with (BUILTIN / "crows_mini.csv").open() as fh:
        raw = list(csv.DictReader(fh))
    pairs = read_crows()
    assert [(p.more, p.less, p.direction) for p in pairs] == [(r["sent_more"], r["sent_less"], r["stereo_antistereo"]) for r in raw]
    bad = tmp_path / "crows.csv"
    bad.write_text("sent_more,stereo_antistereo,bias_type\na,stereo,age\n")
    with pytest.raises(InputError, match=r"crows\.csv, line 1, field 'sent_less'"):
        read_crows(bad)
    bad.write_text("sent_more,sent_less,stereo_antistereo,bias_type\na,b,stereo,age\n,b,stereo,age\n")
    with pytest.raises(InputError, match=r"crows\.csv, line 3, field 'sent_more'"):
        read_crows(bad)


def test_public_crows_pairs() -> None:
    path = shared_data("crows_pairs", "crows_pairs_anonymized.csv")
    pairs = read_crows(path)
    assert len(pairs) == 1508 and {p.direction for p in pairs} == {"stereo", "antistereo"}


def test_suites_parse_and_unknown_lists_valid_ones() -> None:
    assert parse_suites("bias, refusal,bias") == ("bias", "refusal")
    with pytest.raises(InputError) as err:
        parse_suites("refusal,vibes")
    assert "'vibes'" in str(err.value) and all(s in str(err.value) for s in SUITES)


def test_bench_data_defaults_and_limits() -> None:
    data = load_bench_data(SUITES)
    assert set(data.refusal) == {"harmful", "harmless", "lookalike"} and all(len(p) for p in data.refusal.values())
    assert len(data.mc_items) > 0 and len(data.facts) >= 60 and len(data.bbq) == 24 and len(data.crows) == 16
    assert data.toxic is not None and len(data.toxic) == len(load_toxic_prompts()) == 20
    assert data.heldout and data.kl_prompts
    only = load_bench_data(("factual",), BenchFiles(known=shared_data("rome_knowns", "known_1000.json"), limit=5))
    assert len(only.facts) == 5 and not only.bbq and only.sources["factual"].endswith("known_1000.json")
