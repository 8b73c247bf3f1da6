"""Figures of the adapter experiment: the learning-rate grid (notebook 03 §4) and how far apart
the languages sit per system (notebook 05 §8)."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter
import pandas as pd

from .figures import use_style


def plot_lr_grid(grid: pd.DataFrame):
    """Dev score *S* and its three parts against the adapters' learning rate, one line per grid
    variant, the chosen rate ringed (notebook 03 §4)."""
    use_style()
    parts = (("S", "S (mean of the three)"), ("dev_mono", "monolingual mAP"), ("dev_cross", "cross-lingual mAP"),
             ("dev_multi", "multilingual mAP"))
    fig, axes = plt.subplots(1, len(parts), figsize=(11, 2.8), sharex=True)
    for variant, rows in grid.groupby("variant", sort=False):
        rows = rows.sort_values("lr")
        best = rows.loc[rows.S.idxmax()]
        for ax, (col, title) in zip(axes, parts):
            line, = ax.plot(rows.lr, rows[col], marker="o", label=variant)
            ax.plot([best.lr], [best[col]], marker="o", ms=11, mfc="none", color=line.get_color())
            ax.set(xscale="log", title=title, xlabel="learning rate")
    rates = sorted(grid.lr.unique())
    for ax in axes:
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(rates, [f"{lr:g}" for lr in rates])
    axes[0].set_ylabel("mlqa-r-dev (one seed)")
    axes[0].legend(frameon=False)
    fig.suptitle("the adapters' learning rate, chosen on dev (ring: the rate kept)", y=1.02)
    fig.tight_layout()
    return fig


def plot_language_separation(summary: pd.DataFrame):
    """Mean cosine of translations and mean distance between language centroids per system (seed
    mean; bars: lowest to highest seed), in the summary's order (notebook 05 §8)."""
    use_style()
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.32 * len(summary) + 1.4), sharey=True)
    y = range(len(summary))
    for ax, col, title in ((axes[0], "translation_cosine", "mean cosine of translations (higher: closer)"),
                           (axes[1], "centroid_distance", "distance between language centroids (higher: apart)")):
        lo = summary[col] - summary[f"{col}_min"]
        hi = summary[f"{col}_max"] - summary[col]
        ax.errorbar(summary[col], y, xerr=[lo, hi], fmt="o", color="#333333", ecolor="#999999", capsize=2)
        ax.set(title=title)
        ax.grid(axis="x", lw=0.3)
    axes[0].set_yticks(list(y), summary.system)
    axes[0].invert_yaxis()
    fig.suptitle("how far apart the languages sit (XQuAD-R pool)", y=1.0)
    fig.tight_layout()
    return fig
