"""resid_pre activation patching: alignscope vs TransformerLens, side by side, checked against plain HF.

Same inputs for all three, on the embedded SmolLM2-135M-Instruct (30 layers) and a 10-token pair
("The Eiffel Tower ..." / "The Colosseum ...", answer " Paris", foil " Rome"), every layer x position:

* alignscope: ``activation_patching(component="resid_pre")`` (replay from recorded block inputs,
  staircase batching over layers, prefix reuse, last-position unembedding);
* TransformerLens: ``transformer_lens.patching.get_act_patch_resid_pre`` on the same bridge, with
  the clean ``run_with_cache`` (one full forward per (layer, position));
* reference: a naive loop of full forwards on a FRESH plain HF model, a forward pre-hook on the
  decoder block overwriting one position (only for the max |diff| check; its time is printed too).

Wall time and process CPU time are printed for each (the machine may be shared: CPU time is the
steadier figure), then the speed ratios and max |diff| against the plain-HF reference.

Run: .venv/bin/python benchmarks/patching_speed.py [--skip-reference] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

CLEAN = "The Eiffel Tower is located in the city of"
CORRUPT = "The Colosseum is located in the city of"
ANSWER, FOIL = " Paris", " Rome"


def timed(fn):  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def naive_plain_hf(source: str, clean: list[int], corrupt: list[int], a: int, f: int) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    from alignscope.models.registry import decoder_layers

    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, attn_implementation="eager").eval()
    layers = decoder_layers(model)
    grabbed: dict[int, torch.Tensor] = {}
    hs = [layer.register_forward_pre_hook(lambda _m, args, kw, i=i: grabbed.__setitem__(i, (args[0] if args else kw["hidden_states"])[0].clone()),
                                          with_kwargs=True) for i, layer in enumerate(layers)]
    with torch.no_grad():
        model(torch.tensor([clean]))
    for h in hs:
        h.remove()
    with torch.no_grad():
        base_logits = model(torch.tensor([corrupt])).logits[0, -1]
    base = base_logits[a] - base_logits[f]
    out = torch.zeros(len(layers), len(corrupt))
    for i, layer in enumerate(layers):
        for p in range(len(corrupt)):
            def patch(_m, args, kw, i=i, p=p):  # type: ignore[no-untyped-def]
                x = (args[0] if args else kw["hidden_states"]).clone()
                x[0, p] = grabbed[i][p]
                return ((x, *args[1:]), kw) if args else (args, {**kw, "hidden_states": x})
            h = layer.register_forward_pre_hook(patch, with_kwargs=True)
            with torch.no_grad():
                logits = model(torch.tensor([corrupt])).logits[0, -1]
            h.remove()
            out[i, p] = logits[a] - logits[f] - base
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-reference", action="store_true", help="skip the plain-HF loop (no max |diff| check)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (2 = this machine's cores; 1 is steadier on a busy box)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformer_lens import patching

    from alignscope.circuits.patching import activation_patching
    from alignscope.metrics import logit_diff_metric, single_token_id
    from alignscope.models import load_model

    lm = load_model("default", device="cpu")
    tok = lm.tokenizer
    clean, corrupt = tok(CLEAN)["input_ids"], tok(CORRUPT)["input_ids"]
    a, f = single_token_id(tok, ANSWER), single_token_id(tok, FOIL)
    metric = logit_diff_metric(a, f)
    print(f"model {lm.name}: {lm.n_layers} layers; {len(clean)} positions; {lm.n_layers * len(clean)} patches; threads {torch.get_num_threads()}")
    activation_patching(lm, clean[:3], corrupt[:3], metric=metric)  # warm-up

    ours, ours_wall, ours_cpu = timed(lambda: activation_patching(lm, clean, corrupt, metric=metric))
    print(f"alignscope activation_patching: {ours_wall:.2f} s wall, {ours_cpu:.2f} s CPU")

    ids_clean, ids_corrupt = torch.tensor([clean]), torch.tensor([corrupt])
    with torch.no_grad():
        _, cache = lm.bridge.run_with_cache(ids_clean)
        cl = lm.bridge(ids_corrupt)
    base = float(cl[0, -1, a] - cl[0, -1, f])

    def tl_run() -> torch.Tensor:
        with torch.no_grad():
            return patching.get_act_patch_resid_pre(lm.bridge, ids_corrupt, cache, lambda lg: (lg[:, -1, a] - lg[:, -1, f]).sum() - base)

    tl, tl_wall, tl_cpu = timed(tl_run)
    tl = tl.cpu()
    print(f"TransformerLens get_act_patch_resid_pre (bridge): {tl_wall:.2f} s wall, {tl_cpu:.2f} s CPU")
    result = {"n_layers": lm.n_layers, "n_positions": len(clean), "alignscope_wall_s": ours_wall, "alignscope_cpu_s": ours_cpu,
              "tl_wall_s": tl_wall, "tl_cpu_s": tl_cpu, "speedup_wall": tl_wall / ours_wall, "speedup_cpu": tl_cpu / ours_cpu,
              "max_abs_diff_alignscope_vs_tl": float((ours.effect - tl).abs().max())}
    print(f"speed-up vs TransformerLens: {result['speedup_wall']:.1f}x wall, {result['speedup_cpu']:.1f}x CPU")
    if not args.skip_reference:
        ref, ref_wall, ref_cpu = timed(lambda: naive_plain_hf(lm.source, clean, corrupt, a, f))
        result.update({"plain_hf_loop_wall_s": ref_wall, "plain_hf_loop_cpu_s": ref_cpu,
                       "max_abs_diff_alignscope_vs_plain_hf": float((ours.effect - ref).abs().max()),
                       "max_abs_diff_tl_vs_plain_hf": float((tl - ref).abs().max())})
        print(f"naive plain-HF loop (fresh model): {ref_wall:.2f} s wall, {ref_cpu:.2f} s CPU")
        print(f"max |diff| vs plain HF: alignscope {result['max_abs_diff_alignscope_vs_plain_hf']:.2e}, "
              f"TransformerLens {result['max_abs_diff_tl_vs_plain_hf']:.2e}")
    print(f"clean metric {ours.clean_metric:.3f}, corrupt metric {ours.corrupt_metric:.3f}; "
          f"largest effect {float(ours.effect.abs().max()):.3f}")
    print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
