"""Per-query metrics from exact ranks (notebook 04 §3): AP, LAReQA's AP@k, Recall@k, RR,
nDCG@k, rank distance and the same-language share of the top k.

Every function takes inf-padded ranks ``(n, m)`` (any order) and returns one value per query;
NaN for a query with no relevant candidate. **Recall@k** is LAReQA's: |relevant within the top
k| / |R| (so R@10 <= 10/11 in XQuAD-R's multilingual pool). **mAP@k** (XTREME-R) divides by
min(k, |R|): :func:`ap_at_k_lareqa`; full-ranking AP (:func:`average_precision`) divides by |R|
like trec_eval.
"""
from __future__ import annotations

import numpy as np


def _prep(ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = np.sort(np.atleast_2d(np.asarray(ranks, dtype=float)), axis=1)
    n_rel = np.isfinite(r).sum(1)
    return r, n_rel


def safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den where den > 0, else NaN (elementwise)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def average_precision(ranks: np.ndarray) -> np.ndarray:
    """AP over the full ranking: (1/|R|) * sum_i i / rank_i over the sorted ranks."""
    r, n_rel = _prep(ranks)
    i = np.arange(1, r.shape[1] + 1)
    return safe_div((i / r).sum(1), n_rel)


def ap_at_k_lareqa(ranks: np.ndarray, k: int = 20) -> np.ndarray:
    """LAReQA / XTREME-R AP@k: sum_{rank_i <= k} i / rank_i, divided by min(k, |R|)
    (trec_eval's AP@k divides by |R|). Its mean is XTREME-R's mAP@20 for k = 20."""
    r, n_rel = _prep(ranks)
    i = np.arange(1, r.shape[1] + 1)
    return safe_div(np.where(r <= k, i / r, 0.0).sum(1), np.minimum(k, n_rel))


def recall_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """|relevant within the top k| / |R| (LAReQA's R@k; equals trec_eval's recall_k)."""
    r, n_rel = _prep(ranks)
    return safe_div((r <= k).sum(1), n_rel)


def reciprocal_rank(ranks: np.ndarray) -> np.ndarray:
    """1 / rank of the first relevant candidate (no cut-off); mean = MRR."""
    r, n_rel = _prep(ranks)
    return np.where(n_rel > 0, 1.0 / r[:, 0], np.nan)


def ndcg_at_k(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """nDCG@k with binary gains and log2(rank + 1) discounts (trec_eval's ndcg_cut_k)."""
    r, n_rel = _prep(ranks)
    dcg = np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0).sum(1)
    ideal_disc = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))
    idcg = np.where(n_rel > 0, ideal_disc[np.clip(np.minimum(n_rel, k) - 1, 0, None)], 0.0)
    return safe_div(dcg, idcg)


def rank_distance(ranks: np.ndarray) -> np.ndarray:
    """max rank - min rank over the query's relevant candidates (pooled ranking); floor |R| - 1."""
    r, n_rel = _prep(ranks)
    last = np.take_along_axis(r, np.clip(n_rel - 1, 0, None)[:, None], 1)[:, 0]
    return np.where(n_rel > 0, last - np.where(n_rel > 0, r[:, 0], 0.0), np.nan)


def same_language_share(top: np.ndarray, cand_lang: np.ndarray, query_lang: np.ndarray) -> np.ndarray:
    """Share of each query's top-k candidates (positions ``top``, (n, k)) in the query's language."""
    return (np.asarray(cand_lang)[top] == np.asarray(query_lang)[:, None]).mean(1)


def pool_language_share(cand_lang: np.ndarray, query_lang: np.ndarray) -> np.ndarray:
    """Share of the pool in each query's language: the expected top-k share without bias."""
    labels, counts = np.unique(np.asarray(cand_lang), return_counts=True)
    share = dict(zip(labels.tolist(), (counts / counts.sum()).tolist()))
    return np.array([share.get(x, 0.0) for x in np.asarray(query_lang).tolist()])
