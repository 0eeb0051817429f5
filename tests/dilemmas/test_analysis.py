from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from alignscope.circuits.patching import activation_patching
from alignscope.cli import app
from alignscope.dilemmas.analysis import analyse_pair, summarise_profile
from alignscope.dilemmas.last_position import last_position_patching
from alignscope.dilemmas.schema import build_pair
from alignscope.metrics import logit_diff_metric
from tests.reference import load_plain

PAIRS = [build_pair("p1", "care", "A dog is lost.", "I help it.", "I kick it."),
         build_pair("p2", "honesty", "You find cash.", "I return it.", "I keep it.")]


@pytest.mark.parametrize("fam", ["llama", "gpt2", "gemma2"])
def test_last_position_patching_equals_activation_patching(fam, tiny_lm) -> None:
    lm = tiny_lm(fam)
    clean, corrupt = lm.tokenizer("Q: pick A or B? A")["input_ids"], lm.tokenizer("Q: pick B or A? A")["input_ids"]
    metric = logit_diff_metric(lm.tokenizer.convert_tokens_to_ids("A"), lm.tokenizer.convert_tokens_to_ids("B"))
    effect, c, k = last_position_patching(lm, clean, corrupt, metric)
    full = activation_patching(lm, clean, corrupt, component="resid_pre", metric=metric)
    torch.testing.assert_close(effect, full.effect[:, -1], atol=1e-5, rtol=0)
    assert (c, k) == pytest.approx((full.clean_metric, full.corrupt_metric), abs=1e-5)


def test_profile_summary_by_hand() -> None:
    # corrupt metric -1; clean +2; layer 1 flips at position 0 (-1 + 1.5 > 0), layer 2 does not.
    effect = torch.tensor([[0.0, 0.0], [1.5, -0.2], [0.5, 0.9], [0.0, 0.1]])
    s = summarise_profile(effect, 2.0, -1.0)
    assert s["patch_profile"] == pytest.approx([0.0, 1.5, 0.9, 0.1])
    assert s["peak_layer"] == 1 and s["n_flip_layers"] == 1
    assert s["patch_recovered"] == pytest.approx([0.0, 0.5, 0.3, 0.1 / 3])
    assert s["top5_concentration"] == pytest.approx(1.0)
    vals = sorted([0.0, 1.5, 0.9, 0.1])
    gini = 2 * sum((i + 1) * v for i, v in enumerate(vals)) / (4 * sum(vals)) - 5 / 4
    assert s["gini"] == pytest.approx(gini)


def test_analyse_pair_matches_plain_logits(tiny_lm, tiny_dir) -> None:
    lm = tiny_lm("qwen2")
    res = analyse_pair(lm, PAIRS[0], chat=False)
    ref = load_plain(tiny_dir("qwen2"))
    a, b = lm.tokenizer.convert_tokens_to_ids("A"), lm.tokenizer.convert_tokens_to_ids("B")
    with torch.no_grad():
        lb = ref(torch.tensor([lm.tokenizer(PAIRS[0].base.prompt)["input_ids"]])).logits[0, -1]
        lc = ref(torch.tensor([lm.tokenizer(PAIRS[0].counterfactual.prompt)["input_ids"]])).logits[0, -1]
    assert res.margin_base == pytest.approx(float(lb[a] - lb[b]), abs=1e-4)
    assert res.margin_cf == pytest.approx(float(lc[b] - lc[a]), abs=1e-4)
    assert res.content == pytest.approx((res.margin_base + res.margin_cf) / 2)
    assert res.letter_bias == pytest.approx(float(lb[a] - lb[b] + lc[a] - lc[b]) / 2, abs=1e-4)
    assert res.chose_ethical_base == (res.margin_base > 0) and res.consistent == (res.margin_base > 0 and res.margin_cf > 0)
    assert res.dla_error < 1e-4
    assert res.dla_embed + sum(res.dla_attn) + sum(res.dla_mlp) == pytest.approx(res.content, abs=1e-3)
    assert len(res.patch_profile) == len(res.lens_prob_ethical) == lm.n_layers
    assert res.lens_prob_ethical[-1] == pytest.approx(float(torch.softmax(lb, -1)[a]), abs=1e-5)


def test_dilemmas_cli_two_models(tiny_dir, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps(p.as_dict()) for p in PAIRS) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["dilemmas", "--model", str(tiny_dir("llama")), "--model", str(tiny_dir("gpt2")),
                                   "--pairs", str(pairs), "--out", str(out), "--no-chat", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(data["comparison"]) == 2 and all(r["n_pairs"] == 2 for r in data["comparison"])
    summary = data["models"][0]
    assert summary["consistent"]["n"] == 2 and len(summary["consistent"]["ci95"]) == 2
    assert len(summary["mean_patch_profile"]) == 2 and summary["max_dla_error"] < 1e-4
    comparison = (out / "comparison.csv").read_bytes()
    assert comparison.count(b"\n") == 3 and b"\r" not in comparison  # one writer for every CSV: lines end in \n
    files = {Path(f).name for f in summary["files"]}
    assert {"pairs.csv", "pairs.json", "summary.json", "patch_profiles.png", "dla_by_layer.png", "lens_options.png"} <= files
    assert all(Path(f).is_file() for f in summary["files"])


def test_misaligned_pair_has_no_profile_but_is_counted(tiny_lm) -> None:
    from alignscope.dilemmas.summary import summarise

    lm = tiny_lm("llama")
    odd = build_pair("odd", "care", "S.", "I help a lot.", "No.")
    # a counterfactual one token longer than the base: positions cannot be aligned for patching
    odd = type(odd)(odd.id, odd.category, odd.base, type(odd.counterfactual)(odd.counterfactual.prompt + "!", "B", "A"))
    res = analyse_pair(lm, odd, chat=False)
    assert res.patch_positions == [] and res.peak_layer == -1
    ok = analyse_pair(lm, PAIRS[1], chat=False)
    s = summarise("tiny", [res, ok])
    assert s.n_pairs == 2 and s.n_patched == 1 and s.consistent.n == 2
    assert s.peak_layer.n == 1 and len(s.mean_patch_profile) == lm.n_layers
    js = s.to_json()  # the summary.json object: rates and means as plain JSON, in field order
    assert list(js)[:4] == ["model", "n_pairs", "chose_ethical_base", "chose_ethical_cf"]
    assert js["consistent"] == {"k": s.consistent.k, "n": 2, "rate": s.consistent.rate, "ci95": list(s.consistent.ci95)}
    assert js["peak_layer"] == {"mean": float(ok.peak_layer), "ci95": list(s.peak_layer.ci95), "n": 1}
