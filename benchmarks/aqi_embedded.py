"""Per-layer AQI with 95% intervals on the embedded model (builtin:axioms test split), next to the per-layer accuracy
of a refusal probe (difference in means, fitted on builtin:harmful/harmless train, scored on their test split).

Both read ``resid_post``; the AQI pools the mean over real tokens (its default) and, second column, the last token;
the probe reads the last token (the post-instruction position refusal directions use). Chat-formatted prompts.

Run: .venv/bin/python benchmarks/aqi_embedded.py [--bootstrap 1000] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import time

import torch

from alignscope.data.axioms import load_axiom_set
from alignscope.data.builtin_sets import load_builtin
from alignscope.geometry.aqi import AQISettings, measure_aqi
from alignscope.models.loader import load_model
from alignscope.steering.probes import mean_diff_probe, probe_features


def probe_accuracy(lm, batch_size: int) -> list[float]:
    layers = list(range(lm.n_layers))
    feats = {(name, split): probe_features(lm, load_builtin(name, split), layers, component="resid_post", batch_size=batch_size)
             for name in ("harmful", "harmless") for split in ("train", "test")}
    out = []
    for layer in layers:
        probe = mean_diff_probe(feats["harmful", "train"][:, [layer]], feats["harmless", "train"][:, [layer]], [layer],
                                component="resid_post")
        pos = probe.score(feats["harmful", "test"][:, [layer]]) > 0
        neg = probe.score(feats["harmless", "test"][:, [layer]]) <= 0
        out.append(float(torch.cat([pos, neg]).float().mean()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(2)
    lm = load_model("default", device="cpu")
    data = load_axiom_set("builtin:axioms:test")
    start = time.perf_counter()
    mean = measure_aqi(lm, data, AQISettings(bootstrap=args.bootstrap, batch_size=args.batch_size))
    last = measure_aqi(lm, data, AQISettings(pool="last", bootstrap=args.bootstrap, batch_size=args.batch_size))
    aqi_s = time.perf_counter() - start
    acc = probe_accuracy(lm, args.batch_size)
    print(f"model {lm.name}, data builtin:axioms:test (n = {mean.n}), resid_post, {args.bootstrap} bootstrap resamples, "
          f"AQI {aqi_s:.0f} s")
    print(f"{'layer':>5} {'AQI mean-pool':>14} {'95% CI':>15} {'AQI last-token':>15} {'95% CI':>15} {'probe acc':>10}")
    for m, lt, a in zip(mean.per_layer, last.per_layer, acc, strict=True):
        print(f"{m.layer:>5} {m.aqi:>14.2f} {m.ci95[0]:>7.2f}-{m.ci95[1]:<7.2f} {lt.aqi:>15.2f} {lt.ci95[0]:>7.2f}-{lt.ci95[1]:<7.2f} {a:>10.3f}")
    best_probe = sorted(range(len(acc)), key=lambda i: -acc[i])[:5]
    print(f"best-separating layers by AQI (mean pool): {mean.best_layers(5)}")
    print(f"best-separating layers by AQI (last token): {last.best_layers(5)}")
    print(f"best layers by refusal-probe accuracy: {best_probe} ({', '.join(f'{acc[i]:.3f}' for i in best_probe)})")
    print(f"overall at the middle layer {mean.layer}: AQI {mean.aqi:.2f} [{mean.ci95[0]:.2f}, {mean.ci95[1]:.2f}], "
          f"relative {mean.aqi_relative:.2f}, CHI {mean.chi:.2f}, XB {mean.xb:.3f}, DB {mean.davies_bouldin:.3f}, Dunn {mean.dunn:.4f}")
    for axiom, r in mean.per_axiom.items():
        print(f"  {axiom:<15} AQI {r.aqi:6.2f} [{r.ci95[0]:6.2f}, {r.ci95[1]:6.2f}]  relative {r.aqi_relative:6.2f}")


if __name__ == "__main__":
    main()
