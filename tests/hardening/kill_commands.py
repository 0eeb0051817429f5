"""The commands the kill tests interrupt: each one's smallest invocation on a tiny model that still goes
through several checkpointed stages or steps, and the files that hold its result.

:func:`prepare` writes every input under one directory and returns a :class:`KillCommand` per
command; the harness (:mod:`tests.hardening.kill_harness`) runs them, kills them and compares
their result files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from alignscope.models.tiny import build_tiny_model
from tests.pipeline.conftest import HARMFUL, HARMLESS, LOOKALIKE

COMMANDS = ("run refusal", "run refusal_circuit", "mac train", "tuned-lens train", "compare", "capture")


@dataclass(frozen=True)
class KillCommand:
    """One CLI invocation and the files under its output directory that are its result.

    ``args`` take ``{out}`` where the output directory goes; ``results`` are glob patterns
    relative to it (every match is compared with the reference run's).
    """

    name: str
    args: tuple[str, ...]
    results: tuple[str, ...]

    def argv(self, out: Path) -> list[str]:
        """The arguments after ``alignscope`` for output directory ``out``."""
        return [a.replace("{out}", str(out)) for a in self.args]


def prepare(root: Path) -> dict[str, KillCommand]:
    """Write a tiny model and every command's inputs under ``root``; return the commands by name."""
    root.mkdir(parents=True, exist_ok=True)
    model = root / "tiny_llama"
    if not (model / "config.json").is_file():
        build_tiny_model("llama", model)
    data = root / "data"
    data.mkdir(exist_ok=True)
    for name, texts in (("harmful", HARMFUL), ("harmless", HARMLESS), ("lookalike", LOOKALIKE)):
        (data / f"{name}.jsonl").write_text("".join(json.dumps({"prompt": t, "category": name}) + "\n" for t in texts),
                                            encoding="utf-8")
    refusal = {"model": str(model), "device": "cpu", "seed": 0,
               "data": {k: str(data / f"{k}.jsonl") for k in ("harmful", "harmless", "lookalike")},
               "extract": {"positions": "-1,-2"}, "select": {"layer_stride": 1},
               "intervene": {"folds": 2, "n_vector_prompts": 4, "max_new_tokens": 3, "coefficients": [0.5, 1.0]},
               "evaluate": {"max_new_tokens": 3, "batch_size": 4, "compare": ["addition"]},
               "report": {"n_examples": 4}}
    (root / "refusal.yaml").write_text(json.dumps(refusal), encoding="utf-8")
    pairs = [{"harmful": b, "harmless": g, "category": f"c{i % 2}", "split": "rank" if i < 4 else "heldout"}
             for i, (b, g) in enumerate(zip(HARMFUL[:5], HARMLESS[:5], strict=True))]
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs), encoding="utf-8")
    circuit = {"study": "refusal_circuit", "model": str(model), "device": "cpu", "pairs": str(root / "pairs.jsonl"),
               "baseline": {"n": 2}, "rank": {"n_boot": 50, "top": 4},
               "ablation": {"ks": [1, 3], "n_random": 2, "max_new_tokens": 2}}
    (root / "circuit.yaml").write_text(yaml.safe_dump(circuit), encoding="utf-8")
    mac = {"model": str(model), "device": "cpu", "data": {"max_examples_per_mix": 6, "distill_tokens": 3},
           "train": {"layer": 1, "epochs": 2, "batch_size": 2, "checkpoint_every": 2, "max_length": 48},
           "lora": {"r": 2}, "variants": ["module_lora"],  # one variant with both the circuit and LoRA: each checkpointed
           "compare": {"addition": False, "max_new_tokens": 2, "batch_size": 8, "limit": 2, "sensor_prompts": 1}}
    (root / "mac.yaml").write_text(yaml.safe_dump(mac), encoding="utf-8")
    (root / "corpus.txt").write_text("the quick brown fox jumps over the lazy dog. " * 80, encoding="utf-8")
    (root / "models.yaml").write_text("models:\n  m0:\n    tiny: llama\n    device: cpu\n" + "".join(
        f"  m{i}:\n    tiny: llama\n    seed: {i}\n    device: cpu\n    partner: m0\n" for i in range(1, 4)), encoding="utf-8")
    (root / "prompts.jsonl").write_text("".join(json.dumps({"prompt": t}) + "\n" for t in HARMFUL + HARMLESS), encoding="utf-8")
    m = ("--model", str(model), "--device", "cpu")
    commands = [
        KillCommand("run refusal", ("run", str(root / "refusal.yaml"), "--out", "{out}", "--json"),
                    ("results.json", "stages/*.json")),
        KillCommand("run refusal_circuit", ("run", str(root / "circuit.yaml"), "--out", "{out}", "--json"),
                    ("results.json", "top_components.csv", "ablation.csv")),
        KillCommand("mac train", ("mac", "train", str(root / "mac.yaml"), "--out", "{out}", "--json"),
                    ("training.json", "comparison.json", "module_lora/mac.safetensors", "module_lora/adapter/*.safetensors")),
        KillCommand("tuned-lens train", ("tuned-lens", "train", *m, "--corpus", str(root / "corpus.txt"), "--out", "{out}",
                                         "--steps", "150", "--batch-seqs", "2", "--seq-len", "16", "--json"),
                    ("*.safetensors", "*.json")),
        KillCommand("compare", ("compare", str(root / "models.yaml"), "--metrics", "deltas", "--limit", "8", "--out", "{out}",
                                "--json"),
                    ("summary.json", "models/*/*/*.json")),
        KillCommand("capture", ("capture", *m, "--prompts", str(root / "prompts.jsonl"), "--site", "resid_post",
                                "--positions", "all", "--batch-size", "2", "--out", "{out}", "--json"),
                    ("activations.safetensors", "index.json")),
    ]
    return {c.name: c for c in commands}
