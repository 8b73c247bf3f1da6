"""One figure style and one ``save_figure`` helper for every notebook.

Figures are written as PNG and PDF with fixed fonts and sizes and no timestamps, so a rerun
on the same results gives the same files.
"""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt

from . import paths
from .io_utils import atomic_write_bytes

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "xlir",
    "pdf.fonttype": 42,
}
LANG_ORDER = ("en", "de", "es", "ar", "hi", "vi", "zh", "el", "ru", "th", "tr")


def use_style() -> None:
    """Apply the kit's matplotlib style."""
    plt.rcParams.update(STYLE)


def save_figure(fig, name: str, profile: str, folder: Path | None = None) -> list[Path]:
    """Write ``fig`` as ``<name>.png`` and ``<name>.pdf`` under the profile's figures folder."""
    folder = paths.ensure(folder or paths.figures_dir(profile))
    written = []
    for ext, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "ModDate": None, "Producer": None})):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=ext, bbox_inches="tight", metadata=meta)
        written.append(atomic_write_bytes(buffer.getvalue(), folder / f"{name}.{ext}"))
    return written


def length_table(rsets) -> "pd.DataFrame":
    """Character length of every question and candidate sentence (dataset, kind, lang, chars).

    Notebook 01 stores it in ``results/`` so that ``make figures`` redraws ``01_lengths``.
    """
    import pandas as pd

    frames = []
    for rset in rsets:
        frames.append(pd.DataFrame({"dataset": rset.name, "kind": "question", "lang": rset.queries.lang,
                                    "chars": rset.queries.text.str.len()}))
        frames.append(pd.DataFrame({"dataset": rset.name, "kind": "candidate sentence",
                                    "lang": rset.candidates.lang, "chars": rset.candidates.sentence.str.len()}))
    return pd.concat(frames, ignore_index=True)


def plot_length_distributions(lengths: "pd.DataFrame"):
    """Box plots of question and candidate-sentence lengths (characters) per language, per dataset."""
    use_style()
    df = lengths
    names = list(dict.fromkeys(df.dataset))
    langs = [lang for lang in LANG_ORDER if lang in set(df.lang)]
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 2.6 * len(names)), squeeze=False, sharey="col")
    for r, name in enumerate(names):
        for c, kind in enumerate(("question", "candidate sentence")):
            ax = axes[r, c]
            sub = df[(df.dataset == name) & (df.kind == kind)]
            order = [lang for lang in langs if lang in set(sub.lang)]
            ax.boxplot([sub.chars[sub.lang == lang] for lang in order], tick_labels=order,
                       showfliers=False, widths=0.6)
            ax.set_yscale("log")
            ax.set_title(f"{name}: {kind}s")
            ax.set_ylabel("length (characters, log)")
    fig.tight_layout()
    return fig
