"""The lm-eval model type ``alignscope``: a local multiple-choice task scores as alignscope's own TruthfulQA MC scorer.

Offline: the task reads a local JSONL file through the ``json`` dataset builder; the prompt and MC2 scoring
are lm-eval's own (its ``truthfulqa_mc1.yaml`` with the dataset lines swapped, and its ``process_results_mc2``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("lm_eval")

import lm_eval
from lm_eval import simple_evaluate
from lm_eval.api.instance import Instance
from lm_eval.tasks import TaskManager

from alignscope.data.training import load_honest_mc
from alignscope.errors import InputError
from alignscope.evals.generation import generate
from alignscope.evals.loglik import scored_logliks
from alignscope.evals.truthfulqa import evaluate_truthfulqa
from alignscope.integrations.lm_eval_hook import write_pth
from alignscope.integrations.lm_eval_model import AlignscopeLM, cut_at_stops
from alignscope.steering.intervention_io import load_intervention, save_intervention
from alignscope.steering.interventions import ActivationAddition

SRC = Path(__file__).resolve().parents[2] / "src"
ITEMS = 3


def write_tasks(root: Path, items) -> Path:
    """``as_tqa_mc1``/``as_tqa_mc2`` over ``items`` in ``root/tqa.jsonl``."""
    data = root / "tqa.jsonl"
    data.write_text("".join(json.dumps({"question": it.question,
                                        "mc1_targets": {"choices": list(it.mc1_choices), "labels": [int(i == it.mc1_correct_index)
                                                                                                    for i in range(len(it.mc1_choices))]},
                                        "mc2_targets": {"choices": list(it.mc2_choices), "labels": list(it.mc2_labels)}}) + "\n"
                            for it in items))
    mc1 = (Path(lm_eval.__file__).parent / "tasks" / "truthfulqa" / "truthfulqa_mc1.yaml").read_text()
    mc1 = mc1.replace("dataset_path: truthfulqa/truthful_qa\ndataset_name: multiple_choice",
                      f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    validation: {data}")
    mc1 = mc1.replace("task: truthfulqa_mc1", "task: as_tqa_mc1").replace("  - truthfulqa\n", "  - as_tqa\n")
    assert "dataset_path: json" in mc1 and "as_tqa_mc1" in mc1
    (root / "as_tqa_mc1.yaml").write_text(mc1)
    (root / "as_tqa_mc2.yaml").write_text("include: as_tqa_mc1.yaml\ntask: as_tqa_mc2\ndoc_to_target: 0\n"
                                          "doc_to_choice: \"{{mc2_targets.choices}}\"\n"
                                          "process_results: !function utils.process_results_mc2\n"
                                          "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")
    (root / "utils.py").write_text("from lm_eval.tasks.truthfulqa.utils import process_results_mc2  # noqa: F401\n")
    return root


@pytest.fixture(scope="module")
def setup(embedded, tmp_path_factory):
    root = tmp_path_factory.mktemp("lm_eval_tasks")
    items = load_honest_mc("test")[:ITEMS]
    vec = torch.randn(embedded.d_model, generator=torch.Generator().manual_seed(0)) * 2
    iv_file = save_intervention(root / "add.safetensors", ActivationAddition(vec, (12,), 1.0, "resid_post"), model=embedded.name)
    return embedded, items, write_tasks(root, items), iv_file


@pytest.mark.slow
@pytest.mark.parametrize("with_iv", [False, True])
def test_lm_eval_truthfulqa_equals_the_library_scorer(setup, with_iv) -> None:
    lm, items, tasks, iv_file = setup
    model = AlignscopeLM(lm=lm, intervention=str(iv_file) if with_iv else None, batch_size=4)
    out = simple_evaluate(model=model, tasks=["as_tqa_mc1", "as_tqa_mc2"], task_manager=TaskManager(include_path=str(tasks)),
                          log_samples=False)
    ours = evaluate_truthfulqa(lm, items, load_intervention(iv_file) if with_iv else None, batch_size=4)
    assert out["results"]["as_tqa_mc1"]["acc,none"] == pytest.approx(ours.mc1.rate, abs=1e-4)
    assert out["results"]["as_tqa_mc2"]["acc,none"] == pytest.approx(ours.mc2.mean, abs=1e-4)


@pytest.mark.slow
def test_rolling_and_generation_with_the_intervention(setup) -> None:
    lm, _, _, iv_file = setup
    iv = load_intervention(iv_file)
    model = AlignscopeLM(lm=lm, intervention=str(iv_file), batch_size=2, max_length=8)
    text = "The quick brown fox jumps over the lazy dog, then runs far away across the green hills to the old river bank."
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > 16
    [rolling] = model.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)], disable_tqdm=True)
    # By hand: 8 tokens predicted per window; the first from [prefix] + ids[:7], each later chunk ids[s:s+8] from ids[s-1:s+7]
    prefix = lm.tokenizer.bos_token_id if lm.tokenizer.bos_token_id is not None else lm.tokenizer.eos_token_id
    windows = [([prefix], ids[:8])] + [([ids[s - 1]], ids[s:s + 8]) for s in range(8, len(ids), 8)]
    assert rolling == pytest.approx(sum(ll for ll, _ in scored_logliks(lm, windows, iv)), abs=1e-4)
    plain_model = AlignscopeLM(lm=lm, batch_size=2, max_length=8)
    [unsteered] = plain_model.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)], disable_tqdm=True)
    assert unsteered == pytest.approx(sum(ll for ll, _ in scored_logliks(lm, windows)), abs=1e-4) and unsteered != rolling
    [(empty_ctx, _)] = model.loglikelihood([Instance("loglikelihood", {}, ("", " fox"), 0)], disable_tqdm=True)
    fox = lm.tokenizer(" fox", add_special_tokens=False)["input_ids"]
    assert empty_ctx == pytest.approx(scored_logliks(lm, [([prefix], fox)], iv)[0][0], abs=1e-6)
    gens = model.generate_until([Instance("generate_until", {}, ("Q: 2+2?\nA:", {"until": ["\n"], "max_gen_toks": 6}), 0)],
                                disable_tqdm=True)
    direct = generate(lm, ["Q: 2+2?\nA:"], chat=False, max_new_tokens=6, intervention=iv)
    assert gens == [cut_at_stops(direct[0], ["\n"])]


def test_cut_at_stops() -> None:
    assert cut_at_stops("ab\ncd.ef", ["\n", "."]) == "ab"
    assert cut_at_stops("abc", ["", "z"]) == "abc"


def test_intervention_for_another_model_names_both(tiny_lm, tmp_path) -> None:
    lm = tiny_lm("llama")
    wide = save_intervention(tmp_path / "w.safetensors", ActivationAddition(torch.ones(lm.d_model + 3), (0,)), model="other-model")
    with pytest.raises(InputError) as err:
        AlignscopeLM(lm=lm, intervention=str(wide))
    assert "'other-model'" in str(err.value) and repr(lm.name) in str(err.value) and "w.safetensors" in str(err.value)


@pytest.mark.slow
def test_lm_eval_command_finds_the_model_type(setup, tmp_path) -> None:
    """The real ``lm_eval`` command, offline, with the .pth that ``make install`` writes (loaded here through sitecustomize)."""
    _, _, tasks, iv_file = setup
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    write_pth(site_dir)
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "sitecustomize.py").write_text(f"import site\nsite.addsitedir({str(site_dir)!r})\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(boot)]), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    lm_eval_bin = Path(sys.executable).with_name("lm_eval")
    out_dir = tmp_path / "out"
    proc = subprocess.run([str(lm_eval_bin), "--model", "alignscope", "--model_args", f"pretrained=default,intervention={iv_file}",
                           "--tasks", "as_tqa_mc1", "--include_path", str(tasks), "--output_path", str(out_dir), "--batch_size", "4"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [result] = list(out_dir.rglob("results*.json"))
    acc = json.loads(result.read_text())["results"]["as_tqa_mc1"]["acc,none"]
    assert 0.0 <= acc <= 1.0
