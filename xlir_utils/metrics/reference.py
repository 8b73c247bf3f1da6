"""A readable reference of the metric, as XTREME-R computes it (notebook 04 §3 compares it with
the exact engine on a few queries).

After ``average_precision_at_k`` in google-research/xtreme ``third_party/utils_lareqa.py``:
walk down one query's ranking, count hits, sum precision at every hit, divide by the number of
relevant candidates (``k=None``: the full ranking, the paper's mAP) or by min(k, |R|)
(XTREME-R's mAP@20). Ties follow the engine's pessimistic rule: a relevant candidate comes after
every non-relevant one with the same score. One query at a time and a full sort: clear, not
fast; the kit's engine (:mod:`.ranking`) gives the same numbers for all queries at once.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def ranked_candidates(scores: np.ndarray, targets: Sequence[int] = ()) -> np.ndarray:
    """Candidate positions by decreasing score; among equal scores the relevant ``targets`` come
    last, the rest in candidate order (notebook 04 §3). Without ``targets``, ties keep candidate
    order, which matches the engine only when no relevant candidate is tied."""
    scores = np.asarray(scores)
    is_target = np.isin(np.arange(len(scores)), np.asarray(targets, dtype=np.int64))
    return np.lexsort((is_target, -scores))  # stable; the last key sorts first: score, then targets last


def average_precision_at_k(targets: Sequence[int], ranked_predictions: Sequence[int], k: int | None = None) -> float:
    """AP of one query: precision at each relevant hit, summed, over |R| (or min(k, |R|) with ``k``);
    notebook 04 §3."""
    targets = set(int(t) for t in targets)
    if k is not None:
        ranked_predictions = ranked_predictions[:k]
    score, hits, seen = 0.0, 0, set()
    for i, pred in enumerate(ranked_predictions):
        pred = int(pred)
        if pred in targets and pred not in seen:
            hits += 1
            score += hits / (i + 1.0)
        seen.add(pred)
    divisor = min(len(targets), k) if k is not None else len(targets)
    return score / divisor if divisor else float("nan")
