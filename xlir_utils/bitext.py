"""Tatoeba sentence retrieval as XTREME-R scores it (notebook 04 §8).

For each language, the English sentences are the **queries** and that language's sentences the
**index** (google-research/xtreme ``third_party/evaluate_retrieval.py``: ``idx.add(x)`` on the
non-English file, ``idx.search(y, 1)`` with the English one); a query is correct when its nearest
neighbour by cosine is its own translation. Accuracy per language, then the unweighted mean over
languages. The opposite direction (non-English queries, the English index: MTEB's bitext
mining) is reported too, labelled ``xx→en``. Both sides are encoded as ``query`` (E5's prompt for
symmetric tasks). 95 % intervals resample the queries within each language; a system's seed
mean comes from :mod:`xlir_utils.seed_statistics` like LAReQA's.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import metrics as M
from .evaluation import TABLE_COLUMNS
from .seed_statistics import RunValues

if TYPE_CHECKING:  # the type only: systems imports this module
    from .systems.record import EncodeFn

DATASET = "tatoeba"
DIRECTIONS = ("en→xx", "xx→en")  # XTREME-R's, then MTEB's


def top1_correct(queries: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Whether each query's nearest index row (dot product of L2-normalised rows) is its own row."""
    scores = queries.astype(np.float32) @ index.astype(np.float32).T
    return scores.argmax(1) == np.arange(len(queries))


def evaluate_tatoeba(encode: EncodeFn, pairs_by_lang: dict[str, pd.DataFrame], *, bootstrap: int,
                     seed: int) -> tuple[pd.DataFrame, list[RunValues]]:
    """Tidy rows (``dataset`` = tatoeba, ``setting`` = direction, metric ``accuracy``; the engine's
    :data:`~xlir_utils.evaluation.TABLE_COLUMNS`, no system labels) and, per direction, the
    per-query values for the seed statistics (with empty labels: the caller adds the system's)."""
    langs = list(pairs_by_lang)
    correct = {d: [] for d in DIRECTIONS}
    for lang in langs:
        p = pairs_by_lang[lang]
        en = encode(p.en.tolist(), ["en"] * len(p), "query")
        xx = encode(p.xx.tolist(), [lang] * len(p), "query")
        correct["en→xx"].append(top1_correct(en, xx))
        correct["xx→en"].append(top1_correct(xx, en))
    codes = np.concatenate([np.full(len(pairs_by_lang[lang]), i) for i, lang in enumerate(langs)])
    rows, values = [], []
    meta = {"dataset": DATASET, "metric": "accuracy"}
    for direction in DIRECTIONS:
        v = np.concatenate(correct[direction]).astype(float)[:, None]
        cells = M.cell_means(v, codes)[:, 0]  # per language
        draws = np.concatenate([M.cell_means(v, codes, w)[:, :, 0]
                                for w in M.bootstrap_weight_batches(codes, bootstrap, seed, len(codes))]) \
            if bootstrap else np.full((0, len(langs)), np.nan)
        lo, hi = (np.nanquantile(draws, [0.025, 0.975], axis=0) if bootstrap
                  else (np.full(len(langs), np.nan), np.full(len(langs), np.nan)))
        macro = draws.mean(1) if bootstrap else np.array([np.nan])
        m_lo, m_hi = np.nanquantile(macro, [0.025, 0.975]) if bootstrap else (np.nan, np.nan)
        q_side = lambda lang: "en" if direction == "en→xx" else lang  # noqa: E731
        c_side = lambda lang: lang if direction == "en→xx" else "en"  # noqa: E731
        rows.append({**meta, "setting": direction, "query_lang": "all", "cand_lang": "all", "value": float(cells.mean()),
                     "ci_low": float(m_lo), "ci_high": float(m_hi), "n_queries": int(len(codes))})
        for i, lang in enumerate(langs):
            rows.append({**meta, "setting": direction, "query_lang": q_side(lang), "cand_lang": c_side(lang),
                         "value": float(cells[i]), "ci_low": float(lo[i]), "ci_high": float(hi[i]),
                         "n_queries": int((codes == i).sum())})
        values.append(RunValues({}, f"{DATASET} {direction}", codes, {"accuracy": v}))
    return pd.DataFrame(rows, columns=TABLE_COLUMNS), values
