"""The QLoRA path of ``mac train`` on CUDA, on a random-init model of Llama-3-8B's shape: the GPU check of issue 11.

**Not yet run on a GPU** (none has been lent to the project); the README says so. ``--cpu-rehearsal`` runs every step
but the 4-bit load on a small model on CPU, so that the script itself is known to work when a GPU is there.

Run on one CUDA GPU, with the ``gpu`` extra installed (``pip install -e '.[gpu]'``: bitsandbytes, accelerate)::

    .venv/bin/python benchmarks/qlora_gpu_check.py [--layers 2] [--steps 4] [--out DIR] [--no-cli]
    .venv/bin/python benchmarks/qlora_gpu_check.py --cpu-rehearsal     # anywhere, no 4 bits

What it does, nothing downloaded:

1. builds a random-init ``LlamaForCausalLM`` from Llama-3-8B's config (hidden 4096, MLP 14336, 32 heads, 8 KV heads,
   vocab 128256; ``--layers`` of its 32 decoder layers, ``--layers 32`` for the whole shape) and saves it in bf16 as
   safetensors with the embedded model's tokenizer;
2. loads it as ``qlora: true`` does (:func:`~alignscope.models.loader.load_hf` with ``load_in_4bit``) and checks that
   every decoder projection is a bitsandbytes ``Linear4bit``;
3. trains the circuit with LoRA (the ``module_lora`` settings, ``qlora``) for ``--steps`` optimizer steps on the
   built-in refusal and honest mixes, and checks that the loss is finite, that the LoRA matrices and the circuit's
   nudges moved, and that the 4-bit base weights did not;
4. unless ``--no-cli``, runs ``alignscope mac train`` with ``qlora: true`` on that model with tiny limits (both LoRA
   variants, merged and saved, then every comparison row), the whole command a GPU user runs;
5. prints one JSON line: what each step found, the losses, seconds and peak GPU memory, and ``ok``.

Exit status 0 when every check held, 1 when one failed, 2 when CUDA or bitsandbytes is missing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from alignscope.data.training.mixes import load_mixes
from alignscope.models.loader import load_hf, load_model
from alignscope.recipes.mac_train import LoraSettings, TrainSettings, train

LLAMA3_8B = {"hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32, "num_key_value_heads": 8,
             "vocab_size": 128256, "max_position_embeddings": 8192, "rope_theta": 500000.0, "rms_norm_eps": 1e-5}
REHEARSAL = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
             "vocab_size": 49152, "max_position_embeddings": 512}
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def build(out: Path, layers: int, rehearsal: bool) -> int:
    """Save the random-init model and the embedded tokenizer in ``out``; return its parameter count."""
    tokenizer = load_model("default", device="cpu").tokenizer
    shape = REHEARSAL if rehearsal else LLAMA3_8B
    config = LlamaConfig(**shape, num_hidden_layers=layers, tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return sum(p.numel() for p in model.parameters())


def four_bit_layers(model: torch.nn.Module) -> tuple[int, int]:
    """How many decoder projections there are, and how many of them are bitsandbytes ``Linear4bit``."""
    found = [(name, module) for name, module in model.named_modules() if name.rsplit(".", 1)[-1] in PROJECTIONS]
    return len(found), sum(type(module).__name__ == "Linear4bit" for _, module in found)


def run_cli(model_dir: Path, out: Path, device: str, qlora: bool) -> dict[str, Any]:
    """``alignscope mac train`` on ``model_dir`` with tiny limits; its last --json line, or the failure."""
    config = out / "mac.yaml"
    config.write_text(json.dumps({  # JSON is YAML
        "model": str(model_dir), "device": device, "dtype": "bfloat16" if qlora else "float32", "qlora": qlora,
        "data": {"max_examples_per_mix": 8, "distill_tokens": 4},
        "train": {"epochs": 1, "batch_size": 2, "max_length": 64, "checkpoint_every": 2},
        "lora": {"r": 4}, "variants": ["module", "lora", "module_lora"],
        "compare": {"max_new_tokens": 4, "batch_size": 4, "limit": 2, "sensor_prompts": 1, "conscience": "none"},
    }), encoding="utf-8")
    cmd = [sys.executable, "-m", "alignscope", "mac", "train", str(config), "--out", str(out / "run"), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"ok": False, "exit": done.returncode, "stderr_tail": done.stderr[-2000:]}
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {"ok": (out / "run" / "lora_only_merged" / "config.json").is_file(), "exit": 0,
            "rows": [row["name"] for row in summary["comparison"]], "trainable_pct": summary["trainable_pct"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2, help="decoder layers of the 8B shape (32: all of them)")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps to train")
    parser.add_argument("--out", type=Path, default=None, help="working directory (default: a temporary one)")
    parser.add_argument("--no-cli", action="store_true", help="skip step 4, the whole `mac train` command")
    parser.add_argument("--cpu-rehearsal", action="store_true", help="a small model on CPU without 4 bits (checks the script)")
    args = parser.parse_args()
    qlora = not args.cpu_rehearsal
    if qlora:
        if not torch.cuda.is_available():
            print("error: this check needs a CUDA GPU (--cpu-rehearsal runs everything else on CPU)", file=sys.stderr)
            return 2
        try:
            import bitsandbytes  # noqa: F401  (only whether it is installed)
        except ImportError:
            print("error: bitsandbytes is not installed; install the gpu extra: pip install -e '.[gpu]'", file=sys.stderr)
            return 2
    device = "cuda" if qlora else "cpu"
    work = args.out or Path(tempfile.mkdtemp(prefix="qlora_check_"))
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if qlora else "cpu", "layers": args.layers,
                              "shape": "llama-3-8b" if qlora else "rehearsal", "qlora": qlora}
    t0 = time.perf_counter()
    model_dir = work / "model"
    report["params"] = build(model_dir, args.layers, args.cpu_rehearsal)
    report["build_seconds"] = round(time.perf_counter() - t0, 1)

    dtype = torch.bfloat16 if qlora else torch.float32
    model, tokenizer = load_hf(str(model_dir), dtype, torch.device(device), load_in_4bit=qlora)
    n_proj, n_4bit = four_bit_layers(model)
    report["projections"], report["linear4bit"] = n_proj, n_4bit
    base_before = {name: p.detach().clone() for name, p in model.named_parameters() if "layers.0." in name}
    examples = [(e.prompt, e.response) for e in load_mixes(["refusals", "honest"], split="train") if e.response is not None]
    settings = TrainSettings(module=True, lora=LoraSettings(r=8, alpha=16), qlora=qlora, batch_size=2, max_length=64,
                             epochs=1, checkpoint_every=args.steps, scope="response", hold=True)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t1 = time.perf_counter()
    result = train(model, tokenizer, examples, settings, out_dir=work / "train", max_steps=args.steps, progress=True)
    report["train_seconds"] = round(time.perf_counter() - t1, 1)
    report["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None
    report["losses"] = [round(x, 4) for x in result.losses]
    report["trainable_params"], report["trainable_pct"] = result.trainable_params, round(result.trainable_pct, 4)
    lora_moved = any(float(p.detach().abs().sum()) > 0 for name, p in result.model.named_parameters() if "lora_B" in name)
    nudge_moved = result.circuit is not None and float(result.circuit.net.nudge.detach().abs().sum()) > 0
    after = dict(result.model.named_parameters())
    base_kept = all(torch.equal(after[name].detach().float(), before.float()) for name, before in _matching(after, base_before).items())
    checks = {"all_projections_4bit": (n_4bit == n_proj > 0) if qlora else n_4bit == 0,
              "loss_finite": bool(result.losses) and all(torch.isfinite(torch.tensor(result.losses))),
              "lora_moved": lora_moved, "nudge_moved": nudge_moved, "base_unchanged": base_kept,
              "steps": result.steps == args.steps}
    del model, result
    if not args.no_cli:
        report["cli"] = run_cli(model_dir, work, device, qlora)
        checks["cli"] = bool(report["cli"]["ok"])
    report["checks"] = checks
    report["ok"] = all(checks.values())
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report))
    return 0 if report["ok"] else 1


def _matching(after: dict[str, torch.nn.Parameter], before: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``before``'s base weights by their names inside the peft-wrapped model (peft adds a prefix and ``base_layer``)."""
    out = {}
    for name, tensor in before.items():
        stem, leaf = name.rsplit(".", 1)
        found = [k for k in after if k.endswith(name) or k.endswith(f"{stem}.base_layer.{leaf}")]
        if len(found) != 1:
            raise SystemExit(f"error: cannot find base weight {name} in the trained model (found {found})")
        out[found[0]] = tensor
    return out


if __name__ == "__main__":
    sys.exit(main())
