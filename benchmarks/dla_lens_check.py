"""DLA and logit lens on the embedded model: exactness against an independent plain-HF computation, and cost.

For each prompt: alignscope's DLA (bridge hooks, frozen final norm) against a FRESH plain HF
model with torch forward hooks and the final norm / unembedding applied by hand
(``tests/lenses/hf_readout.py``), the sum-of-parts error against the model's own logit
difference, and the logit lens against the same reference. Prints maxima and timings.

Run:  .venv/bin/python benchmarks/dla_lens_check.py [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CASES = [
    ("The capital of France is", " Paris", " London"),
    ("The Eiffel Tower is located in the city of", " Paris", " Rome"),
    ("When Mary and John went to the store, John gave a drink to", " Mary", " John"),
    ("The opposite of hot is", " cold", " warm"),
    ("One, two, three, four,", " five", " six"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from tests.lenses.hf_readout import reference_dla, reference_lens
    from tests.reference import hf_resid_post, load_plain

    from alignscope.lenses.dla import direct_logit_attribution
    from alignscope.lenses.logit_lens import logit_lens
    from alignscope.models.loader import load_model

    lm = load_model("default", device="cpu")
    ref = load_plain(lm.source)
    print(f"{'prompt':<60}{'logit diff':>11}{'sum err':>10}{'max part err':>13}{'lens max err':>13}{'dla s':>7}{'lens s':>7}")
    worst = {"sum": 0.0, "part": 0.0, "lens": 0.0}
    for prompt, answer, foil in CASES:
        t0 = time.perf_counter()
        res = direct_logit_attribution(lm, prompt, answer, foil, chat=False)
        t1 = time.perf_counter()
        lens = logit_lens(lm, prompt, chat=False, track=[answer], top_k=5)
        t2 = time.perf_counter()
        ids = lm.tokenizer(prompt)["input_ids"]
        r = reference_dla(ref, ids, res.answer_id, res.foil_id)
        part_err = max([abs(res.embed - r["embed"])] + [abs(float(a) - b) for a, b in zip(res.attn, r["attn"], strict=True)]
                       + [abs(float(a) - b) for a, b in zip(res.mlp, r["mlp"], strict=True)]
                       + [abs(float(a) - b) for a, b in zip(res.heads.flatten(), torch.tensor(r["heads"]).flatten(), strict=True)])
        expected = reference_lens(ref, hf_resid_post(ref, ids)[:, -1])
        got = torch.tensor([layer.tracked[answer].logit for layer in lens.layers])
        lens_err = float((got - expected[:, res.answer_id]).abs().max())
        sum_err = abs(res.total() - r["logit_diff"])
        worst = {"sum": max(worst["sum"], sum_err), "part": max(worst["part"], part_err), "lens": max(worst["lens"], lens_err)}
        print(f"{prompt[:58]:<60}{res.logit_diff:>11.4f}{sum_err:>10.2e}{part_err:>13.2e}{lens_err:>13.2e}{t1 - t0:>7.2f}{t2 - t1:>7.2f}")
        top_attn = int(res.attn.abs().argmax())
        top_mlp = int(res.mlp.abs().argmax())
        print(f"    largest parts: attn L{top_attn} {float(res.attn[top_attn]):+.3f}, mlp L{top_mlp} {float(res.mlp[top_mlp]):+.3f}; "
              f"{answer!r} first reaches rank 0 at layer "
              f"{next((layer.layer for layer in lens.layers if layer.tracked[answer].rank == 0), None)}")
    print(f"\nworst |sum of parts - model logit diff| = {worst['sum']:.2e} (requirement <= 1e-3)")
    print(f"worst |component - plain-HF reference| = {worst['part']:.2e}; worst lens logit error = {worst['lens']:.2e}")


if __name__ == "__main__":
    main()
