"""Static PNG plots (matplotlib, Agg backend): heatmaps, per-layer curves and rate bars with intervals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alignscope.io import atomic_open


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def heatmap_png(
    path: str | Path,
    values: Any,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    xticklabels: Sequence[str] | None = None,
    yticklabels: Sequence[str] | None = None,
    center_zero: bool = True,
    colorbar_label: str = "",
) -> Path:
    """Save a 2-D array as a heatmap PNG (rows on the y axis). Diverging colours around 0 by default."""
    plt = pyplot()
    arr = np.asarray(values, dtype=float)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * arr.shape[1] + 2), max(3.0, 0.22 * arr.shape[0] + 1.5)))
    if center_zero:
        vmax = float(np.nanmax(np.abs(arr))) if np.isfinite(arr).any() else 1.0
        im = ax.imshow(arr, aspect="auto", cmap="RdBu_r", vmin=-vmax or -1, vmax=vmax or 1, origin="lower")
    else:
        im = ax.imshow(arr, aspect="auto", cmap="viridis", origin="lower")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if xticklabels is not None:
        ax.set_xticks(range(len(xticklabels)))
        ax.set_xticklabels(xticklabels, rotation=60, ha="right", fontsize=7)
    if yticklabels is not None:
        ax.set_yticks(range(len(yticklabels)))
        ax.set_yticklabels(yticklabels, fontsize=7)
    fig.colorbar(im, ax=ax, label=colorbar_label)
    fig.tight_layout()
    return save_figure(fig, plt, path)


def lines_png(
    path: str | Path,
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    x: Sequence[float] | None = None,
    bands: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
) -> Path:
    """Save one or more curves (optionally with shaded interval bands) as a PNG."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, ys in series.items():
        xs = list(x) if x is not None else list(range(len(ys)))
        ax.plot(xs, list(ys), marker="o", markersize=3, label=name)
        if bands and name in bands:
            lo, hi = bands[name]
            ax.fill_between(xs, list(lo), list(hi), alpha=0.2)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, plt, path)


def rate_bars_png(
    path: str | Path,
    groups: Mapping[str, Mapping[str, tuple[float, float, float]]],
    *,
    title: str,
    ylabel: str = "refusal rate",
) -> Path:
    """Grouped bars with 95% interval whiskers: ``groups[condition][label] = (rate, lo, hi)``."""
    plt = pyplot()
    conditions = list(groups)
    labels = sorted({lab for g in groups.values() for lab in g})
    width = 0.8 / max(1, len(conditions))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(labels) + 2), 4))
    for i, cond in enumerate(conditions):
        xs = np.arange(len(labels)) + i * width
        vals = [groups[cond].get(lab, (np.nan, np.nan, np.nan)) for lab in labels]
        r = np.array([v[0] for v in vals])
        err = np.array([[v[0] - v[1] for v in vals], [v[2] - v[0] for v in vals]])
        ax.bar(xs, r, width=width, yerr=err, capsize=3, label=cond)
    ax.set_xticks(np.arange(len(labels)) + width * (len(conditions) - 1) / 2)
    ax.set_xticklabels(labels)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, plt, path)


def save_figure(fig: Any, plt: Any, path: str | Path) -> Path:
    """Write ``fig`` as a PNG through the atomic writer (a full disk is a :class:`~alignscope.errors.DiskFullError`
    naming ``path``, whose old version stays) and close it."""
    out = Path(path)
    try:
        with atomic_open(out, "wb") as fh:
            fig.savefig(fh, format="png", dpi=120)
    finally:
        plt.close(fig)
    return out


def bars_png(path: str | Path, values: Mapping[str, float], *, title: str, ylabel: str,
             errors: Mapping[str, tuple[float, float]] | None = None) -> Path:
    """One bar per name (optionally with ``(lo, hi)`` whiskers) as a PNG."""
    plt = pyplot()
    names = list(values)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(names) + 2), 4))
    heights = np.array([values[n] for n in names], dtype=float)
    yerr = None
    if errors:
        yerr = np.array([[values[n] - errors[n][0] if n in errors else 0.0 for n in names],
                         [errors[n][1] - values[n] if n in errors else 0.0 for n in names]])
    ax.bar(range(len(names)), heights, yerr=yerr, capsize=3)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, plt, path)


def labelled_points_png(path: str | Path, points: Mapping[str, tuple[float, float]], *, title: str, xlabel: str, ylabel: str) -> Path:
    """A scatter of named points, each labelled with its name, as a PNG."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (x, y) in points.items():
        ax.scatter([x], [y])
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, plt, path)
