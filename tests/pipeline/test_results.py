"""The run's results.json is StudyResults.to_json(): it reads back to the same object and redraws the same report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignscope.errors import InputError
from alignscope.evals.study import StudyResults
from alignscope.pipeline import steering_stages
from alignscope.pipeline.config import load_config
from alignscope.pipeline.runner import run_pipeline
from alignscope.reports.refusal_report import build_refusal_report
from tests.pipeline.stubs import stub_intervene, stub_select


def test_results_file_round_trips_and_redraws_the_same_report(tiny_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(steering_stages, "select", stub_select)
    monkeypatch.setattr(steering_stages, "intervene", stub_intervene)
    out = tmp_path / "run"
    result = run_pipeline(load_config(tiny_config()), out, progress=False)
    text = (out / "results.json").read_text(encoding="utf-8")
    saved = json.loads(text)
    # the file written before typed results is what to_json of its reading writes again, byte for byte
    assert json.dumps(StudyResults.from_json(saved, "results.json").to_json(), indent=2) + "\n" == text
    assert json.dumps(result.results.to_json(), indent=2) + "\n" == text
    reloaded = StudyResults.read(out / "results.json")
    assert reloaded == result.results
    # the typed attributes are the file's fields (read here with plain dict indexing)
    for label, n in saved["after"]["n"].items():
        got = reloaded.after.by_label[label]
        assert (got.n, got.k, got.refusal_rate, list(got.ci95)) == (n, saved["after"]["k"][label], saved["after"]["refusal_rate"][label],
                                                                    saved["after"]["ci95"][label])
    assert list(reloaded.baseline.by_category) == list(saved["baseline"]["by_category"]) == ["bad", "good", "lookalike"]
    assert reloaded.gate is None and saved["gate"] is None and reloaded.comparisons == {} == saved["comparisons"]
    assert list(reloaded.directions.curves.cosine_adjacent) == saved["directions"]["curves"]["cosine_adjacent"]
    assert reloaded.directions.curves.cosine_adjacent[0] is None  # the first layer has no previous one (NaN in memory before)
    assert [e.prompt for e in reloaded.examples] == [e["prompt"] for e in saved["examples"]]
    assert set(reloaded.timings) == {"baseline", "extract", "select", "intervene", "evaluate", "report"}
    # a report rebuilt from the file without the model is the report of the in-memory results
    memory, disk = tmp_path / "memory", tmp_path / "disk"
    build_refusal_report(result.results, memory)
    build_refusal_report(reloaded, disk)
    assert (memory / "report.html").read_bytes() == (disk / "report.html").read_bytes()
    assert sorted(p.name for p in memory.iterdir()) == sorted(p.name for p in disk.iterdir())
    # the one the run wrote differs only in the run time (drawn before the report stage's own time was added)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html == (memory / "report.html").read_text(encoding="utf-8").replace(
        f"run took {result.results.seconds:.0f} s", html[html.index("run took "):html.index(" s</p>") + 2])
    # a damaged file is refused with the field path
    saved["after"]["by_category"] = ["bad"]
    (out / "results.json").write_text(json.dumps(saved), encoding="utf-8")
    with pytest.raises(InputError, match=r"results.json, field 'after.by_category': expected an object$"):
        StudyResults.read(out / "results.json")
