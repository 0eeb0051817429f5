from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignscope.dilemmas.moralchoice import load_moralchoice
from alignscope.dilemmas.schema import OPTION_TOKENS, build_pair, load_dilemmas
from alignscope.errors import InputError
from alignscope.models.chat import encode_one
from tests.conftest import shared_data


def test_builtin_set() -> None:
    pairs = load_dilemmas()
    assert len(pairs) >= 40
    assert len({p.id for p in pairs}) == len(pairs)
    assert len({p.category for p in pairs}) >= 8
    for p in pairs:
        assert (p.base.ethical_option, p.counterfactual.ethical_option) == OPTION_TOKENS
        lines_b, lines_c = p.base.prompt.splitlines(), p.counterfactual.prompt.splitlines()
        assert lines_b[2][3:] == lines_c[3][3:] and lines_b[3][3:] == lines_c[2][3:]  # the options swap places
        assert lines_b[0] == lines_c[0] == p.scenario


def test_builtin_pairs_align_token_for_token(embedded) -> None:
    for p in load_dilemmas():
        base, _ = encode_one(embedded.tokenizer, p.base.prompt, chat=True)
        cf, _ = encode_one(embedded.tokenizer, p.counterfactual.prompt, chat=True)
        assert len(base) == len(cf), p.id  # patching compares position by position
    for t in OPTION_TOKENS:
        assert len(embedded.tokenizer(t, add_special_tokens=False)["input_ids"]) == 1


def test_both_record_forms_and_errors(tmp_path: Path) -> None:
    explicit = build_pair("e1", "care", "S.", "I help.", "I leave.").as_dict()
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(explicit) + "\n\n" + json.dumps({"id": "c1", "scenario": "S2.", "ethical": "Good.",
                                                                "unethical": "Bad."}) + "\n", encoding="utf-8")
    pairs = load_dilemmas(path)
    assert [p.id for p in pairs] == ["e1", "c1"] and pairs[1].base.prompt.count("Good.") == 1
    path.write_text(json.dumps({"id": "x", "scenario": "S", "ethical": "", "unethical": "b"}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"d.jsonl, line 1, field 'ethical'"):
        load_dilemmas(path)
    path.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 1: invalid JSON"):
        load_dilemmas(path)
    path.write_text((json.dumps(explicit) + "\n") * 2, encoding="utf-8")
    with pytest.raises(InputError, match="duplicate ids: e1"):
        load_dilemmas(path)
    with pytest.raises(InputError, match="does not exist"):
        load_dilemmas(tmp_path / "missing.jsonl")


def test_moralchoice_fixture(tmp_path: Path) -> None:
    csv_path = tmp_path / "mc.csv"
    csv_path.write_text("scenario_id,ambiguity,generation_rule,context,action1,action2\n"
                        'C_1,low,Do not kill,"You are a lifeguard.",I swim out to help.,I ignore the swimmer.\n', encoding="utf-8")
    (pair,) = load_moralchoice(csv_path)
    assert pair.id == "C_1" and pair.category == "do_not_kill"
    assert "A) I swim out to help." in pair.base.prompt and pair.base.ethical_option == "A"
    assert "B) I swim out to help." in pair.counterfactual.prompt and pair.counterfactual.ethical_option == "B"
    csv_path.write_text("scenario_id,context,action1\nC,x,y\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"mc\.csv, line 1, field 'action2': missing required column"):
        load_moralchoice(csv_path)


def test_moralchoice_shared_data() -> None:
    low = shared_data("moralchoice", "moralchoice_low_ambiguity.csv")
    pairs = load_moralchoice(low, limit=25)
    assert len(pairs) == 25 and pairs[0].id.startswith("C_")
    with pytest.raises(InputError, match="high-ambiguity"):
        load_moralchoice(shared_data("moralchoice", "moralchoice_high_ambiguity.csv"), limit=1)
