"""Did each language adapter learn its language? Held-out MLM loss, adapter by language (notebook 03 §3).

For every language adapter X and every language Y, the held-out MLM loss of Y's text through X
(its invertible part included, as in its MLM training) against the frozen head, minus the loss
of the head alone (:func:`cross_language_mlm`). An adapter counts as *learned* when it lowers its
own language's held-out loss clearly (the 95 % bootstrap interval over held-out texts lies below
zero) and lowers the other languages' loss less on average (:func:`learned_adapters`).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..seeding import derived_seed
from .mlm import MLMHead, text_losses
from .plumbing import enable_adapters, lang_adapter_name, no_adapters


def _bootstrap_delta(with_sum, base_sum, counts, n: int, seed: int) -> tuple[float, float]:
    """95 % interval of the per-token loss difference, resampling held-out texts."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(counts), size=(n, len(counts)))
    tokens = counts[idx].sum(1)
    deltas = (with_sum[idx].sum(1) - base_sum[idx].sum(1)) / np.maximum(tokens, 1)
    return float(np.quantile(deltas, 0.025)), float(np.quantile(deltas, 0.975))


def cross_language_mlm(model, head: MLMHead, held_text: dict[str, list[str]], adapters: Sequence[str],
                       max_seq_length: int, seed: int, *, bootstrap: int = 1000) -> pd.DataFrame:
    """One row per (adapter language, text language): held-out MLM loss through the adapter, the
    head alone, their difference ``delta`` (negative: the adapter helps) and its 95 % interval
    over held-out texts. ``model`` holds the trained language adapters ``la_<lang>``."""
    auto = enable_adapters(model)
    base = {}
    with no_adapters(auto):
        for lang, texts in held_text.items():
            sums, _, counts = text_losses(model, head, texts, max_seq_length, derived_seed(seed, "matrix", lang),
                                          invertible=False)
            base[lang] = sums, counts
    rows = []
    saved = auto.active_adapters
    try:
        for adapter in adapters:
            auto.active_adapters = lang_adapter_name(adapter)
            for lang, texts in held_text.items():
                sums, _, counts = text_losses(model, head, texts, max_seq_length, derived_seed(seed, "matrix", lang))
                base_sums, base_counts = base[lang]
                assert (counts == base_counts).all()  # the same masked tokens with and without the adapter
                n = max(1, counts.sum())
                low, high = _bootstrap_delta(sums, base_sums, counts, bootstrap, derived_seed(seed, "ci", adapter, lang))
                rows.append({"adapter": adapter, "lang": lang, "tokens": int(counts.sum()),
                             "loss": sums.sum() / n, "head_loss": base_sums.sum() / n,
                             "delta": (sums.sum() - base_sums.sum()) / n, "ci_low": low, "ci_high": high})
    finally:
        auto.active_adapters = saved
    return pd.DataFrame(rows)


def learned_adapters(matrix: pd.DataFrame) -> pd.DataFrame:
    """Per adapter: its own language's ``delta`` and interval, the mean ``delta`` on the other
    languages, and ``learned`` (own interval below zero and own delta below the others' mean;
    notebook 03 §3)."""
    rows = []
    for adapter, sub in matrix.groupby("adapter", sort=False):
        own = sub[sub.lang == adapter].iloc[0]
        others = sub[sub.lang != adapter].delta.mean()
        rows.append({"adapter": adapter, "own_delta": own.delta, "own_ci_low": own.ci_low, "own_ci_high": own.ci_high,
                     "others_mean_delta": others,
                     "learned": bool(own.ci_high < 0 and own.delta < others)})
    return pd.DataFrame(rows)
