"""How result rows are grouped, ordered and coloured: from the ``training`` column and the
profile's baselines, never from a system's name (notebooks 04-05, ``make figures``).

Kinds, in reading order: ``zero-shot`` (an off-the-shelf encoder, in the order of
``cfg.baselines``), ``full`` (full fine-tuning: X-X, X-Y, hybrid, then α-sweep runs),
``adapters`` (notebook 03's variants) and ``post-hoc`` (Language Information Removal applied to
embeddings). A system's α comes from its training description.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

LANG_ORDER = ("en", "de", "es", "ar", "hi", "vi", "zh", "el", "ru", "th", "tr")  # trained first, then never-seen
# One colour per language in every figure and in the explorer (matplotlib's tab20, in LANG_ORDER).
LANG_COLOURS = dict(zip(LANG_ORDER, ("#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728",
                                     "#ff9896", "#9467bd", "#c5b0d5", "#8c564b")))
KINDS = ("zero-shot", "full", "adapters", "post-hoc")
KIND_COLOURS = {"zero-shot": "#8c8c8c", "full": "#4c72b0", "adapters": "#55a868", "post-hoc": "#c44e52"}
_SAMPLING_ORDER = {"X-X": 0, "X-Y": 1, "hybrid": 2}


def system_kind(training: str) -> str:
    """The kind of a system from its ``training`` description (see the module docstring)."""
    t = str(training)
    if t == "zero-shot":
        return "zero-shot"
    if t.startswith("adapters"):
        return "adapters"
    if t.startswith("LIR"):
        return "post-hoc"
    if t.split(" ", 1)[0] in _SAMPLING_ORDER:
        return "full"
    raise ValueError(f"unknown training description {training!r}: expected 'zero-shot', 'X-X', 'X-Y', "
                     "'hybrid', 'hybrid (alpha=…)', 'adapters: …' or 'LIR …'")


def training_alpha(training: str, default_alpha: float = 0.5) -> float | None:
    """The α (share of X-X batches) of a full fine-tuning run; None for other kinds."""
    t = str(training)
    if system_kind(t) != "full":
        return None
    m = re.search(r"alpha=([0-9.]+)", t)
    if m:
        return float(m.group(1))
    return {"X-X": 1.0, "X-Y": 0.0}.get(t.split(" ", 1)[0], float(default_alpha))


def system_order(results: pd.DataFrame, baselines: Sequence[str] = ()) -> list[str]:
    """Systems (``model`` values) in reading order: by kind, baselines in ``baselines`` order
    (then first appearance), full runs by sampling then α, the rest by name."""
    first = results.drop_duplicates("model")[["model", "training"]].reset_index(drop=True)
    base_rank = {m: i for i, m in enumerate(baselines)}

    def key(row):
        kind = system_kind(row.training)
        if kind == "zero-shot":
            within = (base_rank.get(row.model, len(base_rank)), row.Index, "")
        elif kind == "full":
            sampling = row.training.split(" ", 1)[0]
            within = (_SAMPLING_ORDER[sampling], training_alpha(row.training) or 0.0, row.model)
        else:
            within = (0, 0, row.model)
        return (KINDS.index(kind), *within)

    return [row.model for row in sorted(first.itertuples(), key=key)]


def system_colours(results: pd.DataFrame, models: Sequence[str]) -> list[str]:
    """One colour per model, by its kind."""
    kind = dict(zip(results.model, results.training.map(system_kind)))
    return [KIND_COLOURS[kind[m]] for m in models]


def mean_over_seeds(results: pd.DataFrame) -> pd.DataFrame:
    """Tidy result rows averaged over each system's seeds, with the system as ``model`` (per-language
    tables and figures; headline numbers and intervals come from :mod:`xlir_utils.seed_statistics`)."""
    if "system" not in results.columns:
        return results
    keys = ["system", "training", "dataset", "setting", "query_lang", "cand_lang", "metric"]
    out = results.groupby(keys, sort=False, dropna=False).value.mean().reset_index()
    return out.assign(model=out.system)


def lang_colour(lang: str) -> str:
    """The kit's colour of a language (grey for one outside :data:`LANG_ORDER`)."""
    return LANG_COLOURS.get(lang, "#7f7f7f")
