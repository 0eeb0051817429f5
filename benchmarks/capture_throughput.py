"""Capture throughput as a ratio to a plain HF forward pass over the same prompts, with peak memory.

Both sides run in their own fresh process on the same prompts, batches and left padding:
* plain HF: a fresh ``AutoModelForCausalLM`` (default attention), ``model(ids, attention_mask)``;
* plain HF hidden states: the base model with ``output_hidden_states=True``, last token stacked;
* alignscope: ``capture(..., ["resid_post"], positions="last")`` over all layers (the bridge's
  hooks, batched, position gather), in memory and to disk.
Peak memory is the process's max RSS. ``--store-n`` additionally captures that many prompts to
disk to show that memory stays bounded as n grows.

Run: .venv/bin/python benchmarks/capture_throughput.py [--n 256] [--batch-size 16] [--store-n 2000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

WORKER = r"""
import json, resource, sys, tempfile, time
import torch
torch.manual_seed(0)
mode, n, bs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
subjects = ["bread", "tides", "volcanoes", "taxes", "chess", "gardens", "rivers", "poetry", "robots", "bees"]
verbs = ["Explain", "Describe", "Summarise", "Tell me about", "Give three facts about", "Write a short note on"]
prompts = [f"{verbs[i % len(verbs)]} {subjects[(i * 7) % len(subjects)]} for a curious reader number {i}." + " Please." * (i % 5)
           for i in range(n)]
from alignscope.models import load_model
from alignscope.models.chat import encode_batch
lm = load_model("default", device="cpu")
if mode in ("hf", "hf_hidden"):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(lm.source).eval()
    batches = [encode_batch(lm.tokenizer, prompts[i:i + bs], chat=True) for i in range(0, n, bs)]
    del lm
    model(batches[0].input_ids[:, -4:])  # warm-up
    t = time.perf_counter()
    with torch.no_grad():
        for b in batches:
            if mode == "hf":
                model(b.input_ids, attention_mask=b.attention_mask)
            else:  # what a plain-HF user would do to read every layer's last-token residual
                hs = model.model(b.input_ids, attention_mask=b.attention_mask, output_hidden_states=True).hidden_states
                torch.stack([h[:, -1] for h in hs[1:]], dim=1).clone()
    secs = time.perf_counter() - t
else:
    from alignscope.activations import capture
    capture(lm, prompts[:2], ["resid_post"])  # warm-up
    out = tempfile.mkdtemp() if mode == "store" else None
    t = time.perf_counter()
    capture(lm, prompts, ["resid_post"], positions="last", chat=True, batch_size=bs, out_dir=out)
    secs = time.perf_counter() - t
print(json.dumps({"mode": mode, "n": n, "seconds": secs, "prompts_per_s": n / secs,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(mode: str, n: int, bs: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", WORKER, mode, str(n), str(bs)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--store-n", type=int, default=0, help="also capture this many prompts to disk (memory check)")
    args = parser.parse_args()
    hf = run("hf", args.n, args.batch_size)
    hidden = run("hf_hidden", args.n, args.batch_size)
    ours = run("capture", args.n, args.batch_size)
    store = run("store", args.n, args.batch_size)
    print(f"plain HF forward       : {hf['prompts_per_s']:.1f} prompts/s, peak RSS {hf['peak_rss_mb']:.0f} MB")
    print(f"plain HF hidden states : {hidden['prompts_per_s']:.1f} prompts/s, peak RSS {hidden['peak_rss_mb']:.0f} MB")
    print(f"alignscope capture     : {ours['prompts_per_s']:.1f} prompts/s, peak RSS {ours['peak_rss_mb']:.0f} MB")
    print(f"alignscope capture+disk: {store['prompts_per_s']:.1f} prompts/s, peak RSS {store['peak_rss_mb']:.0f} MB")
    print(f"throughput ratio capture / plain HF forward: {ours['prompts_per_s'] / hf['prompts_per_s']:.2f}")
    print(f"throughput ratio capture / plain HF output_hidden_states: {ours['prompts_per_s'] / hidden['prompts_per_s']:.2f}")
    result = {"hf": hf, "hf_hidden": hidden, "capture": ours, "store": store, "ratio": ours["prompts_per_s"] / hf["prompts_per_s"]}
    if args.store_n:
        big = run("store", args.store_n, args.batch_size)
        print(f"capture+disk of {args.store_n} prompts: peak RSS {big['peak_rss_mb']:.0f} MB "
              f"(vs {store['peak_rss_mb']:.0f} MB for {args.n})")
        result["store_large"] = big
    print(json.dumps(result))


if __name__ == "__main__":
    main()
