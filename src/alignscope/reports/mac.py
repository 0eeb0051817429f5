"""Pictures and the HTML page of an alignment-circuit run: loss curves, the comparison, what the circuit senses.

* ``loss.png``: the training loss per optimizer step of every variant.
* ``comparison.png``: refusal rates per label with 95% intervals, one bar group per row.
* ``sensors_<i>.png``: per-token axis scores and gates of one prompt (tokens on the x axis).
* ``trajectories.png``: the last prompt token's hidden state projected on each axis, layer by
  layer, with and without the circuit.
* ``report.html``: all of the above plus the comparison table; every text drawn from data is escaped.

Example:
    >>> write_mac_report(out_dir, training, rows, traces, trajectories)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alignscope.reports.html import Page
from alignscope.reports.plots import lines_png, pyplot, rate_bars_png, save_figure


def sensor_png(path: str | Path, trace: Mapping[str, Any], axis_names: Sequence[str]) -> Path:
    """Two stacked heatmaps for one prompt: axis scores (diverging) and gates (0..1), tokens on the x axis; a dashed line
    before ``trace["nudged_from"]`` (when above 0) marks where the nudges start to act."""
    plt = pyplot()
    tokens = [repr(t)[1:-1] for t in trace["tokens"]]
    scores, gates = np.asarray(trace["scores"], dtype=float).T, np.asarray(trace["gates"], dtype=float).T
    fig, (a, b) = plt.subplots(2, 1, figsize=(max(6.0, 0.32 * len(tokens) + 2), 1.2 * len(axis_names) * 2 + 2), sharex=True)
    vmax = float(np.abs(scores).max()) or 1.0
    im = a.imshow(scores, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    fig.colorbar(im, ax=a, label="axis score")
    im2 = b.imshow(gates, aspect="auto", cmap="viridis", vmin=min(0.0, float(gates.min())), vmax=1.0)
    fig.colorbar(im2, ax=b, label="gate")
    start = int(trace.get("nudged_from", 0))
    gate_title = "gates (how much each nudge acts" + (": from the dashed line on)" if start > 0 else ")")
    for ax, title in ((a, "sensed axis scores"), (b, gate_title)):
        if start > 0:
            ax.axvline(start - 0.5, color="black", linestyle="--", linewidth=1)
        ax.set_yticks(range(len(axis_names)))
        ax.set_yticklabels(list(axis_names))
        ax.set_title(title, fontsize=9)
    b.set_xticks(range(len(tokens)))
    b.set_xticklabels(tokens, rotation=70, ha="right", fontsize=7)
    fig.suptitle(trace["prompt"][:100], fontsize=9)
    fig.tight_layout()
    return save_figure(fig, plt, path)


def trajectories_png(path: str | Path, trajectories: Mapping[str, torch.Tensor], axis_names: Sequence[str]) -> Path:
    """Per axis, the projection per layer with and without the circuit."""
    series: dict[str, list[float]] = {}
    for condition, values in trajectories.items():
        for i, name in enumerate(axis_names):
            series[f"{name} ({condition} circuit)"] = [float(x) for x in values[:, i]]
    return lines_png(path, series, title="last prompt token, projected on the circuit's axes", xlabel="layer (resid_post)",
                     ylabel="projection")


def write_mac_report(out_dir: str | Path, training: Mapping[str, Mapping[str, Any]], rows: Sequence[Any],
                     traces: Sequence[Mapping[str, Any]], trajectories: Mapping[str, torch.Tensor] | None,
                     axis_names: Sequence[str], model: str) -> dict[str, Path]:
    """Write the PNGs and ``report.html``; returns every file written by name."""
    out = Path(out_dir)
    files: dict[str, Path] = {}
    curves = {name: list(t["losses"]) for name, t in training.items() if t.get("losses")}
    if curves:
        files["loss"] = lines_png(out / "loss.png", curves, title="training loss (responses only)", xlabel="optimizer step",
                                  ylabel="cross-entropy (nats)")
    groups = {r.name: {label: (rt.rate, *rt.ci95) for label, rt in r.refusal.items()} for r in rows}
    if groups:
        files["comparison"] = rate_bars_png(out / "comparison.png", groups, title="refusal on held-out prompts (95% Wilson)")
    for i, trace in enumerate(traces):
        files[f"sensors_{i}"] = sensor_png(out / f"sensors_{i}.png", trace, axis_names)
    if trajectories is not None:
        files["trajectories"] = trajectories_png(out / "trajectories.png", trajectories, axis_names)
    page = Page(f"Alignment circuit: {model}", "every rate with n and a 95% interval; test splits only")
    page.add_heading("Comparison (same prompts, same greedy decoding)")
    columns = ["row", "harmful", "harmless", "lookalike", "MC1", "MC2", "KL mean", "perplexity", "trainable", "train s",
               "generate / plain HF"]
    table = []
    for r in rows:
        j = r.to_json()
        cells = [r.name] + [_rate(j["refusal"].get(label)) for label in ("harmful", "harmless", "lookalike")]
        cells += [_rate(j["mc1"]), _mean(j["mc2"]), "" if j["kl"] is None else f"{j['kl']['mean']:.4f}", f"{j['perplexity']:.2f}",
                  "" if j["trainable_params"] is None else f"{j['trainable_params']:,} ({j['trainable_pct']:.3f}%)",
                  "" if j["train_seconds"] is None else f"{j['train_seconds']:.0f}",
                  "" if j["throughput_ratio"] is None else f"{j['throughput_ratio']:.2f}"]
        table.append(cells)
    page.add_table(columns, table)
    for name in ("comparison", "loss", "trajectories", *[k for k in files if k.startswith("sensors_")]):
        if name in files:
            page.add_image(files[name], alt=name)
    files["report"] = page.write(out / "report.html")
    return files


def _rate(r: Mapping[str, Any] | None) -> str:
    if not r or r.get("rate") is None:
        return "n/a"
    return f"{100 * r['rate']:.1f}% [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}] n={r['n']}"


def _mean(m: Mapping[str, Any]) -> str:
    if m.get("mean") is None:
        return "n/a"
    return f"{m['mean']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}] n={m['n']}"
