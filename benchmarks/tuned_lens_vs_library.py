"""Tuned-lens training throughput: alignscope's loop vs the `tuned-lens` library's own loop, side by side.

Both train the same model (the embedded SmolLM2-135M-Instruct) on the same built-in corpus, on
this machine, with the same torch thread count, in one run (ours, library, ours again; the mean
of our two runs is reported, so background load hits both sides alike).

The library side (PyPI ``tuned-lens`` 0.2.0) runs in a SEPARATE virtual environment, never the
project's. Its ``train`` script imports ``torchdata.dataloader2``, which no longer exists for
torch 2.13, so this benchmark drives the library's own ``TunedLens`` module with the body of its
``Train.execute`` loop copied verbatim (no-grad forward with ``output_hidden_states``, per-layer
bf16 autocast KL and backward, grad clipping, Nesterov SGD with ``lr = 1 - momentum``), at its
defaults: one sequence of ``--lib-seq-len`` (2048) tokens per batch. Set it up with::

    python3.11 -m venv /tmp/tlvenv
    # reuse the project's torch 2.13 / transformers build (appended after the venv's own packages)
    python -c "import site; print(site.getsitepackages()[0])" > /tmp/tlvenv/lib/python3.11/site-packages/zz_project.pth
    /tmp/tlvenv/bin/pip install --no-deps tuned-lens==0.2.0

If that interpreter is missing, the library figure printed is the REFERENCE figure from the
issue (about 34 tokens/s on this machine, bf16 autocast, batch size 1), clearly labelled.

With ``--full`` it also trains a complete lens with the CLI defaults (``alignscope tuned-lens
train``) and evaluates it on the built-in held-out text (exact full-vocabulary KL), printing the
wall time and the tuned/logit-lens KL ratio.

Run:  .venv/bin/python benchmarks/tuned_lens_vs_library.py [--threads 2] [--full]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

LIB_PYTHON = os.environ.get("TUNED_LENS_PYTHON", "/tmp/tlvenv/bin/python")
REFERENCE_TOKENS_PER_S = 34.0

LIB_SCRIPT = r'''
import json, sys, time
sys.modules["transformer_lens"] = None  # the library probes TransformerLens 1.x; TL 4 would break its import
import torch as th
from transformers import AutoModelForCausalLM
from tuned_lens import TunedLens
from tuned_lens.utils import shift_labels, shift_preds
args = json.loads(sys.argv[1])
th.set_num_threads(args["threads"])
th.manual_seed(0)
model = AutoModelForCausalLM.from_pretrained(args["model"], dtype=th.float32).eval()
lens = TunedLens.from_model(model)
opt = th.optim.SGD([p for p in lens.parameters() if p.requires_grad], lr=1.0 * (1 - 0.9), momentum=0.9,
                   nesterov=True, weight_decay=1e-3)
ids = th.tensor(args["ids"])  # (steps, seq)
times, losses = [], []
for step in range(ids.shape[0]):
    t0 = time.perf_counter()
    batch = {"input_ids": ids[step:step + 1]}
    # ---- verbatim from tuned_lens.scripts.train_loop.Train.execute (KL loss, grad_acc_steps = 1) ----
    with th.no_grad():
        output = model(**batch, output_hidden_states=True)
    final_logits = output.logits
    hidden_states = output.hidden_states[:-1]
    shift = 0
    labels = final_logits.float().log_softmax(dim=-1)
    labels = shift_labels(labels, shift)
    total = 0.0
    for i, h in enumerate(hidden_states):
        with th.autocast("cpu", dtype=th.bfloat16):
            logits = shift_preds(lens(h, idx=i), shift)
            loss = th.sum(labels.exp() * (labels - logits.log_softmax(-1)), dim=-1).mean()
            scaled_loss = loss / 1
        scaled_loss.backward()
        total += float(loss)
    th.nn.utils.clip_grad_norm_(lens.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=False)
    # ---- end of verbatim part ----
    times.append(time.perf_counter() - t0)
    losses.append(total / len(hidden_states))
print(json.dumps({"times": times, "losses": losses, "tokens_per_step": int(ids.shape[1])}))
'''


def ours(lm, chunks: torch.Tensor, steps: int) -> float:
    """Tokens/s of alignscope's loop over ``steps`` steps after one warm-up step (default config)."""
    from alignscope.lenses.train_loop import TrainConfig, train_tuned_lens

    cfg = TrainConfig(checkpoint_every=0)
    with tempfile.TemporaryDirectory() as tmp:
        train_tuned_lens(lm, chunks, tmp, config=cfg, max_steps=1)  # warm-up, not timed
    with tempfile.TemporaryDirectory() as tmp:
        _, rep = train_tuned_lens(lm, chunks, tmp, config=cfg, max_steps=steps)
    return rep.tokens_per_second


def library(model_dir: str, stream: list[int], seq_len: int, steps: int, threads: int) -> dict | None:
    """Run the library loop in its own venv; None when that interpreter is not there."""
    if not Path(LIB_PYTHON).is_file():
        return None
    need = (steps + 1) * seq_len
    if len(stream) < need:
        stream = (stream * (need // len(stream) + 1))[:need]
    ids = [stream[i * seq_len:(i + 1) * seq_len] for i in range(steps + 1)]
    arg = json.dumps({"model": model_dir, "ids": ids, "threads": threads})
    proc = subprocess.run([LIB_PYTHON, "-c", LIB_SCRIPT, arg], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(f"library run failed:\n{proc.stderr[-2000:]}")
        return None
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    timed = out["times"][1:]  # the first step is warm-up
    out["tokens_per_s"] = seq_len * len(timed) / sum(timed)
    return out


def full_run(threads: int) -> None:
    """Train with the CLI defaults on the built-in corpus, then evaluate on the held-out text."""
    with tempfile.TemporaryDirectory() as tmp:
        cli = [sys.executable, "-m", "alignscope", "tuned-lens"]
        t0 = time.perf_counter()
        train = subprocess.run([*cli, "train", "--out", tmp, "--threads", str(threads), "--json"],
                               capture_output=True, text=True, check=True)
        train_s = time.perf_counter() - t0
        ev = subprocess.run([*cli, "eval", "--lens", tmp, "--threads", str(threads), "--json"],
                            capture_output=True, text=True, check=True)
    t = json.loads(train.stdout.strip().splitlines()[-1])
    e = json.loads(ev.stdout.strip().splitlines()[-1])
    print(f"\nfull training (CLI defaults): {t['train']['steps']} steps, {t['train']['tokens']} tokens, "
          f"{train_s / 60:.1f} min wall incl. model load ({t['train']['tokens_per_second']:.0f} tokens/s in the loop)")
    print(f"held-out eval ({e['n_tokens']} tokens, exact KL): mean logit lens {e['mean_kl_logit_lens']:.3f} nats, "
          f"tuned lens {e['mean_kl_tuned_lens']:.3f} nats -> ratio {e['ratio']:.3f} "
          f"(without layer 0: {e['ratio_without_layer0']:.3f}); target <= 0.25")
    print("per-layer KL logit lens:", [round(x, 2) for x in e["kl_logit_lens"]])
    print("per-layer KL tuned lens:", [round(x, 2) for x in e["kl_tuned_lens"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6, help="timed steps of our loop (1024 tokens each)")
    parser.add_argument("--lib-steps", type=int, default=2, help="timed steps of the library loop")
    parser.add_argument("--lib-seq-len", type=int, default=2048)
    parser.add_argument("--full", action="store_true", help="also train a full lens and evaluate it")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from alignscope.lenses.corpus import load_corpus_text, token_chunks
    from alignscope.models.loader import load_model

    lm = load_model("default", device="cpu")
    text = load_corpus_text(None)
    chunks = token_chunks(lm.tokenizer, text, 128)
    stream = chunks.flatten().tolist()
    print(f"machine: {os.cpu_count()} CPUs, torch threads {args.threads}, load average {os.getloadavg()[0]:.1f} "
          "(shared machine: other jobs slow both sides alike)")
    a = ours(lm, chunks, args.steps)
    print(f"alignscope (run 1): {a:.1f} tokens/s")
    lib = library(lm.source, stream, args.lib_seq_len, args.lib_steps, args.threads)
    b = ours(lm, chunks, args.steps)
    print(f"alignscope (run 2): {b:.1f} tokens/s")
    mean_ours = (a + b) / 2
    if lib is None:
        lib_tps, label = REFERENCE_TOKENS_PER_S, "REFERENCE figure from the issue (library not runnable here)"
    else:
        lib_tps, label = lib["tokens_per_s"], f"measured now, {args.lib_seq_len}-token sequences, batch 1, bf16 autocast"
        print(f"tuned-lens 0.2.0 loop: {lib_tps:.1f} tokens/s ({label}); step losses {[round(x, 2) for x in lib['losses']]}")
    print(f"\n{'loop':<28}{'tokens/s':>10}")
    print(f"{'alignscope (mean of 2)':<28}{mean_ours:>10.1f}")
    print(f"{'tuned-lens 0.2.0':<28}{lib_tps:>10.1f}   [{label}]")
    print(f"speed-up: {mean_ours / lib_tps:.1f}x (target >= 5x)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if args.full:
        full_run(args.threads)


if __name__ == "__main__":
    main()
