"""How well a linear probe of the prompt separates harmful from harmless and lookalike prompts, on the VALIDATION splits.

The alignment circuit's gate must make this decision from its layer's states. This prints what the
logistic probe of ``gate_init: probe`` (``recipes.mac_init.gate_probe``; harmless and lookalike train
prompts as two equally weighted negative groups) reaches at ``resid_post`` of a few layers, from three poolings of
the RMS-normalised states (what the circuit's sensors read): the last token, the user's message,
and every token of the chat-formatted prompt (what ``gate_init: probe`` starts the gate from).
Fitted on the train splits; the threshold is the one that keeps 95% of the harmful val prompts;
printed: the harmless and lookalike val prompts above it.

Run: .venv/bin/python benchmarks/mac_probe_ceiling.py [--layers 12 15 18 20]
"""

from __future__ import annotations

import argparse

import torch

from alignscope.data.builtin_sets import load_builtin
from alignscope.models.loader import load_model
from alignscope.recipes.mac_init import gate_probe
from alignscope.steering.probes import Pooling, chat_span, probe_features

LABELS = ("harmful", "harmless", "lookalike")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[12, 15, 18, 20])
    args = parser.parse_args()
    torch.set_num_threads(2)
    lm = load_model("default", dtype="float32", device="cpu")
    head, tail = chat_span(lm.tokenizer)
    poolings = {"last token": Pooling(), "user message": Pooling("span", skip_head=head, skip_tail=tail), "whole prompt": Pooling("span")}
    texts = {(label, split): load_builtin(label, split=split).texts for label in LABELS for split in ("train", "val")}
    sizes = ", ".join(f"{label} {len(texts[(label, 'val')])}" for label in LABELS)
    print(f"val n: {sizes}; threshold at 95% of harmful val")
    print(f"  {'pooling':<14}{'layer':>6}{'harmless':>10}{'lookalike':>11}")
    for name, pool in poolings.items():
        f = {k: probe_features(lm, v, args.layers, component="resid_post", pooling=pool, token_norm=True) for k, v in texts.items()}
        for i, layer in enumerate(args.layers):
            probe = gate_probe(f[("harmful", "train")][:, i:i + 1], [f[(label, "train")][:, i:i + 1] for label in ("harmless", "lookalike")],
                               layer, pool)
            s = {label: probe.score(f[(label, "val")][:, i:i + 1]) for label in LABELS}
            t = torch.quantile(s["harmful"], 0.05)
            print(f"  {name:<14}{layer:>6}{100 * float((s['harmless'] > t).float().mean()):>9.1f}%"
                  f"{100 * float((s['lookalike'] > t).float().mean()):>10.1f}%", flush=True)


if __name__ == "__main__":
    main()
