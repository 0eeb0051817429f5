"""The same command with the same seed gives identical results on CPU.

Every command of the secrets test (except ``run`` and ``compare``, whose resumed results the kill
tests compare with an uninterrupted run's) runs twice on a tiny model into two directories. The
JSON object on the last stdout line and every JSON, JSONL, CSV and safetensors file written must be
identical, after dropping only the fields listed in :data:`VOLATILE`: wall-clock timings and the
output paths themselves (which name the two directories). HTML and PNG files are not compared
(they embed the same numbers, drawn). See the README's "Reproducibility" section for CUDA.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from alignscope.cli import app
from tests.fake_openai import FakeOpenAI
from tests.hardening.test_secrets import commands

VOLATILE = frozenset({"seconds", "train_seconds", "wall_seconds", "elapsed", "tokens_per_second", "throughput", "paths", "out",
                      "out_dir", "path", "files", "created", "started", "finished", "timestamp", "duration"})
"""Keys whose values are timings or this run's own output paths."""

SKIPPED = ("run", "compare")
runner = CliRunner()


def scrub(value: Any, root: str) -> Any:
    """``value`` without :data:`VOLATILE` keys, and with the output root replaced in strings."""
    if isinstance(value, dict):
        return {k: scrub(v, root) for k, v in value.items() if k not in VOLATILE and not k.endswith("_seconds")}
    if isinstance(value, list):
        return [scrub(v, root) for v in value]
    return value.replace(root, "ROOT") if isinstance(value, str) else value


def _files(root: Path) -> dict[str, Any]:
    got: dict[str, Any] = {}
    for f in sorted(root.rglob("*")):
        rel = str(f.relative_to(root))
        if not f.is_file() or "cache" in f.parts or f.suffix in (".html", ".png", ".log"):
            continue
        if f.suffix == ".json":
            got[rel] = scrub(json.loads(f.read_text(encoding="utf-8")), str(root))
        elif f.suffix == ".safetensors":
            got[rel] = _safetensors(f, str(root))
        elif f.suffix == ".csv":
            got[rel] = scrub(list(csv.DictReader(io.StringIO(f.read_text(encoding="utf-8")))), str(root))
        elif f.suffix == ".jsonl":
            got[rel] = [scrub(json.loads(line), str(root)) for line in f.read_text(encoding="utf-8").splitlines() if line]
        else:
            got[rel] = f.read_bytes().replace(str(root).encode(), b"ROOT")
    return got


def _safetensors(path: Path, root: str) -> dict[str, Any]:
    """Tensors as raw bytes, and metadata with JSON-valued entries parsed and scrubbed (a lens stores its training timings)."""
    with safe_open(str(path), framework="pt") as fh:
        meta = {k: scrub(json.loads(v) if v.startswith("{") else v, root) for k, v in (fh.metadata() or {}).items()}
        tensors = {k: (str(fh.get_tensor(k).dtype), fh.get_tensor(k).reshape(-1).view(torch.uint8).numpy().tobytes())
                   for k in fh.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    return {"meta": meta, "tensors": tensors}


def test_same_command_same_results(tiny_dir: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGNSCOPE_CACHE", str(tmp_path / "cache"))
    model = str(tiny_dir("llama"))
    outputs: list[dict[str, Any]] = []
    with FakeOpenAI(lambda text: "REFUSAL" if "hurt" in text else "4") as judge:
        for side in ("a", "b"):
            root = tmp_path / side
            root.mkdir()
            printed: dict[str, Any] = {}
            for name, args in commands(model, root, judge.url, root / "unused.yaml").items():
                if name in SKIPPED:
                    continue
                res = runner.invoke(app, args)
                assert res.exit_code == 0, f"{name}: {res.output}"
                printed[name] = scrub(json.loads(res.stdout.strip().splitlines()[-1]), str(root))
            outputs.append({"printed": printed, "files": _files(root)})
    a, b = outputs
    assert len(a["printed"]) == 16 and len(a["files"]) > 30
    assert a["files"].keys() == b["files"].keys()
    differ = [k for k in a["files"] if a["files"][k] != b["files"][k]]
    differ += [k for k in a["printed"] if a["printed"][k] != b["printed"][k]]
    assert not differ


def test_scrub_keeps_results_and_drops_only_timings() -> None:
    got = scrub({"rate": 0.5, "seconds": 3.0, "stage_seconds": 1, "paths": {"x": "/r/x"}, "note": "/r/a.json", "rows": [{"kl": 1}]}, "/r")
    assert got == {"rate": 0.5, "note": "ROOT/a.json", "rows": [{"kl": 1}]}
