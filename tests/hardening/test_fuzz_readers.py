"""Every file reader, fed hostile files: it returns, or raises one InputError naming the file; never another exception.

Hypothesis generates truncated files, wrong types, huge numbers, NaN, empty files, BOMs, invalid
UTF-8, very long lines and deep nesting around each format's own field names. The default profile
keeps CI fast; ``pytest --hypothesis-profile=long tests/hardening`` searches much deeper.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alignscope.circuits.pairs import load_pairs, load_trace_items
from alignscope.data.axioms import read_hh as read_axiom_hh
from alignscope.data.axioms import read_litmus
from alignscope.data.bias import read_bbq, read_crows
from alignscope.data.facts import load_facts, read_known_facts
from alignscope.data.prompts import load_prompts
from alignscope.data.public import load_advbench, load_hh_rlhf, load_refusal_direction, load_xstest
from alignscope.data.refusal_pairs import load_refusal_pairs
from alignscope.data.text_groups import load_text_groups
from alignscope.data.toxic_prompts import load_toxic_prompts
from alignscope.data.training.formats import load_alpaca, load_beavertails, load_hh_examples, load_truthfulqa_csv, read_mc_task
from alignscope.dilemmas.moralchoice import load_moralchoice
from alignscope.dilemmas.schema import load_dilemmas
from alignscope.errors import AlignscopeError
from alignscope.evals.refusal import load_phrases
from alignscope.lenses.corpus import load_corpus_text
from alignscope.pipeline.config import load_config
from alignscope.pipeline.mac_config import load_mac_config
from alignscope.pipeline.model_catalog import load_catalog
from alignscope.steering.circuit import load_circuit
from alignscope.steering.direction_io import load_direction
from alignscope.steering.intervention_io import load_intervention
from tests.hardening.strategies import csv_files, json_files, jsonl_files, safetensors_files, yaml_files

PROMPT_FIELDS = ["prompt", "label", "category", "id", "split"]

# name -> (reader, file suffix, strategy for the file's bytes)
READERS: dict[str, tuple[Callable[[Path], Any], str, st.SearchStrategy[bytes]]] = {
    "prompts.jsonl": (load_prompts, ".jsonl", jsonl_files(PROMPT_FIELDS)),
    "prompts.json": (load_prompts, ".json", json_files(PROMPT_FIELDS)),
    "prompts.csv": (load_prompts, ".csv", csv_files(PROMPT_FIELDS)),
    "prompts.txt": (load_prompts, ".txt", st.binary(max_size=500)),
    "patch pairs": (load_pairs, ".jsonl", jsonl_files(["clean", "corrupt", "answer", "foil", "id"])),
    "trace items": (load_trace_items, ".jsonl", jsonl_files(["prompt", "subject", "answer", "foil", "id", "known_id"])),
    "dilemmas": (load_dilemmas, ".jsonl", jsonl_files(["id", "category", "base", "counterfactual", "option", "other_option", "scenario"])),
    "moralchoice": (load_moralchoice, ".csv", csv_files(["scenario_id", "ambiguity", "context", "action1", "action2", "generation_type"])),
    "run config": (load_config, ".yaml", yaml_files(["model", "data", "extract", "select", "intervene", "evaluate", "seed", "out"])),
    "mac config": (load_mac_config, ".yaml", yaml_files(["model", "data", "train", "lora", "qlora", "variants", "compare"])),
    "alpaca": (load_alpaca, ".json", json_files(["instruction", "input", "output"])),
    "beavertails": (lambda p: load_beavertails(p), ".jsonl", jsonl_files(["prompt", "response", "is_safe", "category"])),
    "truthfulqa csv": (load_truthfulqa_csv, ".csv", csv_files(["Type", "Category", "Question", "Best Answer", "Correct Answers",
                                                                "Incorrect Answers", "Source"])),
    "mc_task": (read_mc_task, ".json", json_files(["question", "mc1_targets", "mc2_targets"])),
    "hh examples": (load_hh_examples, ".jsonl", jsonl_files(["chosen", "rejected"])),
    "hh-rlhf pairs": (lambda p: load_hh_rlhf(p), ".jsonl", jsonl_files(["chosen", "rejected"])),
    "advbench": (lambda p: load_advbench(p), ".csv", csv_files(["goal", "target"])),
    "refusal_direction": (lambda p: load_refusal_direction(p, "harmful"), ".json", json_files(["instruction", "category"])),
    "xstest": (lambda p: load_xstest(p), ".csv", csv_files(["id", "prompt", "type", "label", "focus", "note"])),
    "refusal phrases": (load_phrases, ".txt", st.binary(max_size=500)),
    "lens corpus": (load_corpus_text, ".txt", st.binary(max_size=500)),
    "litmus.csv": (read_litmus, ".csv", csv_files(["axiom", "safety_label", "input", "split"])),
    "litmus.jsonl": (read_litmus, ".jsonl", jsonl_files(["axiom", "safety_label", "input", "split"])),
    "axioms hh": (read_axiom_hh, ".jsonl", jsonl_files(["chosen", "rejected"])),
    "bbq": (read_bbq, ".jsonl", jsonl_files(["example_id", "question_polarity", "context_condition", "category", "answer_info",
                                             "additional_metadata", "context", "question", "ans0", "ans1", "ans2", "label"])),
    "crows-pairs": (read_crows, ".csv", csv_files(["", "sent_more", "sent_less", "stereo_antistereo", "bias_type"])),
    "facts": (load_facts, ".jsonl", jsonl_files(["id", "subject", "relation", "prompt", "target"])),
    "rome knowns": (read_known_facts, ".json", json_files(["known_id", "subject", "attribute", "template", "prediction", "prompt",
                                                           "relation_id"])),
    "refusal pairs": (load_refusal_pairs, ".jsonl", jsonl_files(["id", "category", "split", "harmful", "harmless"])),
    "deltas text groups": (load_text_groups, ".jsonl", jsonl_files(["chosen", "rejected"])),
    "toxicity prompts": (load_toxic_prompts, ".jsonl", jsonl_files(["prompt", "id", "category"])),
    "model registry": (load_catalog, ".yaml", yaml_files(["models", "id", "path", "tiny", "dtype", "load_in_4bit", "device_map",
                                                          "intervention", "partner"])),
    "direction": (load_direction, ".safetensors", safetensors_files()),
    "intervention": (load_intervention, ".safetensors", safetensors_files()),
    "circuit": (load_circuit, ".safetensors", safetensors_files()),
}


def check(reader: Callable[[Path], Any], suffix: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{suffix}"
        path.write_bytes(data)
        try:
            reader(path)
        except AlignscopeError as exc:
            message = str(exc)
            assert str(path) in message, f"the error does not name the file: {message!r}"
            assert "\n" not in message.strip(), f"expected one line: {message!r}"


DEGENERATE = [b"", b"\xef\xbb\xbf", b"\n\n  \n", b"\x00" * 64, b"\xff\xfe\xfd", b"[" * 200_000, b"{" * 200_000]
"""Fixed degenerate inputs every reader gets besides the generated ones: empty, BOM only, blank lines, NULs, bad UTF-8,
and 200,000 unclosed brackets."""


@pytest.mark.parametrize("name", sorted(READERS))
def test_reader_survives_hostile_files(name: str) -> None:
    reader, suffix, files = READERS[name]

    @given(files)
    def run(data: bytes) -> None:
        check(reader, suffix, data)

    run()


@pytest.mark.parametrize("name", sorted(READERS))
@pytest.mark.parametrize("data", DEGENERATE)
def test_reader_survives_degenerate_files(name: str, data: bytes) -> None:
    reader, suffix, _ = READERS[name]
    check(reader, suffix, data)
