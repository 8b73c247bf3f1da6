"""Figures of notebook 03 §3: the candidate MLM heads and the language-adapter MLM matrix."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .figures import _langs_in, use_style


def plot_head_study(per_lang: pd.DataFrame, study: pd.DataFrame, vocab: int | None = None):
    """Held-out MLM loss per language of every candidate head (the chosen one drawn solid), with
    uniform over the head's vocabulary as a reference (notebook 03 §3)."""
    use_style()
    langs = _langs_in(per_lang.lang)
    fig, ax = plt.subplots(figsize=(8.5, 3.6))
    markers = "osD^v"
    for i, row in enumerate(study.itertuples()):
        sub = per_lang[per_lang.candidate == row.name].set_index("lang").reindex(langs)
        label = f"{row.name}: {row.heldout_loss:.2f} nats, {row.heldout_accuracy:.1%} ({row.seconds / 60:.0f} min)"
        ax.plot(range(len(langs)), sub.head_loss, marker=markers[i % len(markers)], ls="-" if row.chosen else ":",
                lw=2 if row.chosen else 1, label=label + ("  ← chosen" if row.chosen else ""))
    if vocab:
        ax.axhline(math.log(vocab), color="grey", lw=0.8, ls="--", label=f"uniform over {vocab:,} ids: {math.log(vocab):.2f}")
    ax.set_xticks(range(len(langs)), langs)
    ax.set(ylabel="held-out MLM loss (nats)", title="candidate MLM heads on the frozen encoder (lower is better)")
    ax.legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


def plot_mlm_matrix(matrix: pd.DataFrame):
    """Change in held-out MLM loss (nats) of each language's text (columns) through each language
    adapter (rows), against the head alone; the diagonal is the adapter's own language
    (notebook 03 §3). Blue: the adapter lowers the loss."""
    use_style()
    langs = _langs_in(matrix.adapter)
    cols = _langs_in(matrix.lang)
    grid = matrix.pivot(index="adapter", columns="lang", values="delta").reindex(index=langs, columns=cols)
    lim = float(np.nanmax(np.abs(grid.values))) or 1.0
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(cols), 0.8 + 0.45 * len(langs)))
    im = ax.imshow(grid.values, cmap="RdBu_r", vmin=-lim, vmax=lim)
    for i in range(len(langs)):
        for j in range(len(cols)):
            v = grid.values[i, j]
            ax.text(j, i, f"{v:+.2f}", ha="center", va="center", fontsize=6.5,
                    color="white" if abs(v) > 0.6 * lim else "black", fontweight="bold" if langs[i] == cols[j] else None)
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(langs)), langs)
    ax.set(xlabel="held-out text of language", ylabel="language adapter",
           title="MLM loss change through each language adapter (nats)")
    fig.colorbar(im, ax=ax, shrink=0.8, label="loss with adapter − head alone")
    fig.tight_layout()
    return fig
