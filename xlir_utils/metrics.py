"""Retrieval metrics for the LAReQA protocol: exact ranks, per-query metrics, bootstrap.

Arrays and tensors in, arrays out; nothing here reads a file.

**Ranks.** :func:`rank_relevant_grouped` scores every query against every candidate (dot
product: pass L2-normalised embeddings for cosine), in chunks of queries so memory stays
bounded, and returns the exact 1-based rank of every relevant candidate in the full ranking
(no cut-off), both in the whole pool and within its own candidate group (language). Ranks are
held as a float array ``(n_queries, max |R|)``, sorted ascending, padded with ``inf``.

**Ties are pessimistic**: a relevant candidate is ranked after every non-relevant candidate
with an equal score (rank = 1 + #{non-relevant with score >= s} + #{relevant ranked before
it}). With distinct scores this is the one ranking; with ties it is what trec_eval (and so
``ir_measures``' default provider, pytrec_eval) gives when the non-relevant documents' docnos
sort after the relevant ones (trec_eval breaks ties by docno, descending). The result does not
depend on candidate order. Ties occur in practice only between identical candidate texts (with
sentence-only candidates, 11 of XQuAD-R's 13,090 queries have a relevant sentence whose exact
duplicate elsewhere is not relevant; none in MLQA-R).

**Speed.** Scores are float32 (NumPy BLAS: torch's MKL sgemm is slower on AMD CPUs); counts
use NumPy compares summed as uint8/uint16, several times faster than torch bool reductions on
CPU; torch serves only ``topk``. Full XQuAD-R (13,090 x 13,014), every setting: a few seconds
on 2 cores (``benchmarks/evaluate.py``).

**Recall@k** is LAReQA's: |relevant within the top k| / |R| (so R@10 <= 10/11 in XQuAD-R's
multilingual pool). **mAP@k** (XTREME-R) divides by min(k, |R|): :func:`ap_at_k_lareqa`;
full-ranking AP (:func:`average_precision`) divides by |R| like trec_eval.

**Bootstrap.** Queries are resampled within their group (query language) and the statistic
is the macro mean over (group, column) cells; the resample depends only on the groups, ``n``
and ``seed``, so two systems evaluated on the same queries get the same resamples (paired).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "RelevantRanks", "rank_relevant_grouped", "rank_relevant", "ranks_from_scores", "pad_ranks",
    "average_precision", "ap_at_k_lareqa", "recall_at_k", "precision_at_k", "reciprocal_rank",
    "ndcg_at_k", "rank_distance", "same_language_share", "pool_language_share",
    "macro_mean", "bootstrap_weights", "bootstrap_weight_batches", "cell_means", "select_mean",
    "bootstrap_ci", "PairedTest", "paired_test",
]

ArrayLike = np.ndarray | torch.Tensor


# --------------------------------------------------------------------------- ranks


@dataclass(frozen=True)
class RelevantRanks:
    """Ranks of each query's relevant candidates; slot ``j`` of row ``i`` is one relevant.

    ``positions``: candidate positions (-1 = padding). ``pool_rank``: 1-based rank in the
    whole pool; ``group_rank``: rank among the candidates of its own group (equal to
    ``pool_rank`` when no groups were given); both ``inf`` on padding. ``group``: the group of
    each slot (-1 = padding). ``top``: the top-k candidate positions in the pool, or None.
    """

    positions: np.ndarray
    pool_rank: np.ndarray
    group_rank: np.ndarray
    group: np.ndarray
    top: np.ndarray | None = None

    def ranks_in_group(self, g: int) -> np.ndarray:
        """Sorted ranks (inf-padded) of each query's relevant candidates of group ``g``."""
        return np.sort(np.where(self.group == g, self.group_rank, np.inf), axis=1)

    def ranks_in_pool(self) -> np.ndarray:
        """Sorted ranks (inf-padded) of each query's relevant candidates in the whole pool."""
        return np.sort(self.pool_rank, axis=1)


def _as_float_array(x: ArrayLike, name: str) -> np.ndarray:
    """float32, C-contiguous NumPy copy-or-view of an array or (any-device) tensor."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.ascontiguousarray(x, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows x dims), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or inf values: check the encoder output")
    return a


def pad_ranks(ranks: list[np.ndarray] | list[list[float]]) -> np.ndarray:
    """Ragged per-query ranks → sorted float array ``(n, max len)`` padded with ``inf``."""
    width = max((len(r) for r in ranks), default=0)
    out = np.full((len(ranks), max(width, 1)), np.inf)
    for i, r in enumerate(ranks):
        out[i, : len(r)] = np.sort(np.asarray(r, dtype=float))
    return out


def _pad_relevant(relevant: list[np.ndarray], n_cand: int) -> np.ndarray:
    width = max((len(r) for r in relevant), default=0)
    slots = np.full((len(relevant), max(width, 1)), -1, dtype=np.int64)
    for i, r in enumerate(relevant):
        r = np.unique(np.asarray(r, dtype=np.int64))
        if len(r) and (r[0] < 0 or r[-1] >= n_cand):
            raise ValueError(f"query {i}: relevant position out of range [0, {n_cand})")
        slots[i, : len(r)] = r
    return slots


def _group_slot_tables(slot_group: np.ndarray, n_groups: int) -> list[np.ndarray]:
    """Per group g: ``(n, m_g)`` slot indices of each row's relevant of group g (-1 = none)."""
    tables = []
    n, m = slot_group.shape
    for g in range(n_groups):
        hit = slot_group == g
        m_g = int(hit.sum(1).max()) if n else 0
        table = np.full((n, m_g), -1, dtype=np.int64)
        if m_g:
            order = np.argsort(~hit, axis=1, kind="stable")[:, :m_g]  # hit slots first
            keep = np.take_along_axis(hit, order, axis=1)
            table[keep] = order[keep]
        tables.append(table)
    return tables


_COUNT_BLOCK = 65535  # columns per uint16 partial count


def _count_ge(scores: np.ndarray, thr: np.ndarray, buf: np.ndarray) -> np.ndarray:
    """Per row, how many ``scores`` are >= the row's threshold ``thr`` (int64).

    NumPy compare into a reused bool buffer, summed as uint8 into uint16 per column block:
    several times faster than a torch bool reduction on CPU.
    """
    out = np.zeros(scores.shape[0], dtype=np.int64)
    col = thr[:, None]
    for lo in range(0, scores.shape[1], _COUNT_BLOCK):
        hi = min(lo + _COUNT_BLOCK, scores.shape[1])
        b = buf[:, : hi - lo]
        np.greater_equal(scores[:, lo:hi], col, out=b)
        out += b.view(np.uint8).sum(1, dtype=np.uint16)
    return out


def _ranks_for_chunk(
    scores: np.ndarray,
    slots: np.ndarray,
    slot_group: np.ndarray,
    group_tables: list[np.ndarray] | None,
    bounds: list[tuple[int, int]],
) -> tuple[np.ndarray, np.ndarray]:
    """Pessimistic ranks of the relevant slots of one chunk of query rows.

    ``scores`` columns are in group-contiguous order (group g spans ``bounds[g]``) and
    ``slots`` index those columns. rank = 1 + #{non-relevant >= s} + #{relevant before}.
    """
    n, m = slots.shape
    valid = slots >= 0
    t = np.take_along_axis(scores, np.clip(slots, 0, None), 1)
    t = np.where(valid, t, np.float32(np.inf))
    buf = np.empty((n, min(scores.shape[1], _COUNT_BLOCK)), dtype=bool)
    pool_ge = np.stack([_count_ge(scores, t[:, j], buf) for j in range(m)], 1)
    # relevant-vs-relevant terms: how many relevant score >= me, how many come before me
    ti, tj = t[:, :, None], t[:, None, :]
    vj = valid[:, None, :]
    idx = np.arange(m)
    ge_rel = (tj >= ti) & vj
    before = ((tj > ti) | ((tj == ti) & (idx[None, None, :] < idx[None, :, None]))) & vj
    pool_rank = pool_ge - ge_rel.sum(2) + before.sum(2) + 1
    if group_tables is None:
        return pool_rank, pool_rank
    grp_ge = np.zeros((n, m + 1), dtype=np.int64)  # last column: sink for padding
    for (lo, hi), table in zip(bounds, group_tables):
        if table.shape[1] == 0:
            continue
        tg = np.where(table >= 0, np.take_along_axis(t, np.clip(table, 0, None), 1), np.float32(np.inf))
        block = scores[:, lo:hi]
        for k in range(table.shape[1]):
            np.put_along_axis(grp_ge, np.where(table[:, k:k + 1] >= 0, table[:, k:k + 1], m),
                              _count_ge(block, tg[:, k], buf)[:, None], 1)
    same = slot_group[:, :, None] == slot_group[:, None, :]
    group_rank = grp_ge[:, :m] - (ge_rel & same).sum(2) + (before & same).sum(2) + 1
    return pool_rank, group_rank


def _perm_of(cand_groups: np.ndarray | None, n_cand: int) -> np.ndarray:
    """Candidate order used internally: stable sort by group (identity without groups)."""
    if cand_groups is None:
        return np.arange(n_cand)
    return np.argsort(np.asarray(cand_groups, dtype=np.int64), kind="stable")


def _rank_driver(score_chunks, relevant, n_cand, cand_groups, top_k) -> RelevantRanks:
    """Shared driver: ``score_chunks()`` yields (row slice, float32 score chunk with columns in
    :func:`_perm_of` order)."""
    n_q = len(relevant)
    slots_orig = _pad_relevant(relevant, n_cand)
    valid = slots_orig >= 0
    if cand_groups is None:
        groups = np.zeros(n_cand, dtype=np.int64)
    else:
        groups = np.asarray(cand_groups, dtype=np.int64)
        if groups.shape != (n_cand,) or (n_cand and groups.min() < 0):
            raise ValueError("cand_groups must hold one non-negative integer per candidate")
    n_groups = int(groups.max()) + 1 if n_cand else 1
    perm = _perm_of(cand_groups, n_cand)  # group-contiguous column order
    inv = np.empty_like(perm)
    inv[perm] = np.arange(n_cand)
    sizes = np.bincount(groups, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    bounds = [(int(starts[g]), int(starts[g + 1])) for g in range(n_groups)]
    # slots in permuted positions, sorted so each row's slots are group-contiguous
    big = np.iinfo(np.int64).max
    slots = np.sort(np.where(valid, inv[np.clip(slots_orig, 0, None)], big), axis=1)
    slots[slots == big] = -1
    valid = slots >= 0
    slot_group = np.where(valid, groups[perm[np.clip(slots, 0, None)]], -1)
    tables = _group_slot_tables(slot_group, n_groups) if cand_groups is not None else None

    pool_rank = np.full(slots.shape, np.inf)
    group_rank = np.full(slots.shape, np.inf)
    top = np.empty((n_q, min(top_k, n_cand)), dtype=np.int64) if top_k else None
    for rows, scores in score_chunks():
        tab = [tb[rows] for tb in tables] if tables is not None else None
        p, g = _ranks_for_chunk(scores, slots[rows], slot_group[rows], tab, bounds)
        v = valid[rows]
        pool_rank[rows] = np.where(v, p, np.inf)
        group_rank[rows] = np.where(v, g, np.inf)
        if top is not None:
            top[rows] = perm[torch.from_numpy(scores).topk(top.shape[1], dim=1).indices.numpy()]
    positions = np.where(valid, perm[np.clip(slots, 0, None)], -1)
    return RelevantRanks(positions, pool_rank, group_rank, slot_group, top)


def rank_relevant_grouped(
    query_emb: ArrayLike,
    cand_emb: ArrayLike,
    relevant: list[np.ndarray],
    cand_groups: np.ndarray | None = None,
    *,
    top_k: int = 0,
    chunk_size: int = 1024,
) -> RelevantRanks:
    """Exact ranks of every relevant candidate, in the pool and within its group, one pass.

    ``relevant[i]``: candidate positions relevant to query i. ``cand_groups``: an integer
    group (language) per candidate; each group is also a pool of its own (mono/cross-lingual
    settings). ``top_k``: also return each query's top-k pool positions (ties in arbitrary
    order). Scores are float32 dot products computed ``chunk_size`` queries at a time.
    """
    q = _as_float_array(query_emb, "query_emb")
    c = _as_float_array(cand_emb, "cand_emb")
    if q.shape[1] != c.shape[1]:
        raise ValueError(f"embedding sizes differ: queries {q.shape[1]}, candidates {c.shape[1]}")
    if len(relevant) != q.shape[0]:
        raise ValueError(f"{len(relevant)} relevant sets for {q.shape[0]} queries")

    cp = np.ascontiguousarray(c[_perm_of(cand_groups, c.shape[0])].T)

    def chunks():  # NumPy's BLAS: on AMD CPUs torch's MKL sgemm is markedly slower
        for start in range(0, q.shape[0], chunk_size):
            rows = slice(start, min(start + chunk_size, q.shape[0]))
            yield rows, q[rows] @ cp

    return _rank_driver(chunks, relevant, c.shape[0], cand_groups, top_k)


def ranks_from_scores(
    scores: ArrayLike,
    relevant: list[np.ndarray],
    cand_groups: np.ndarray | None = None,
    *,
    top_k: int = 0,
    chunk_size: int = 1024,
) -> RelevantRanks:
    """As :func:`rank_relevant_grouped`, from a precomputed score matrix (queries x candidates)."""
    s = _as_float_array(scores, "scores")
    if len(relevant) != s.shape[0]:
        raise ValueError(f"{len(relevant)} relevant sets for {s.shape[0]} score rows")

    perm = _perm_of(cand_groups, s.shape[1])

    def chunks():
        for start in range(0, s.shape[0], chunk_size):
            rows = slice(start, min(start + chunk_size, s.shape[0]))
            yield rows, np.ascontiguousarray(s[rows][:, perm])

    return _rank_driver(chunks, relevant, s.shape[1], cand_groups, top_k)


def rank_relevant(
    query_emb: ArrayLike,
    cand_emb: ArrayLike,
    relevant: list[np.ndarray],
    pool: np.ndarray | None = None,
    *,
    chunk_size: int = 1024,
) -> np.ndarray:
    """Sorted 1-based ranks ``(n_queries, max |R|)``, inf-padded, of the relevant candidates
    inside ``pool`` (a boolean mask over candidates; None = all). Relevant candidates outside
    the pool are dropped; a query with none left gets an all-inf row."""
    cand = _as_float_array(cand_emb, "cand_emb")
    n_cand = cand.shape[0]
    if pool is None:
        keep = np.arange(n_cand)
    else:
        pool = np.asarray(pool, dtype=bool)
        if pool.shape != (n_cand,):
            raise ValueError(f"pool mask has shape {pool.shape}, expected ({n_cand},)")
        keep = np.flatnonzero(pool)
    new_pos = np.full(n_cand, -1, dtype=np.int64)
    new_pos[keep] = np.arange(len(keep))
    rel = [new_pos[np.asarray(r, dtype=np.int64)] for r in relevant]
    rel = [r[r >= 0] for r in rel]
    return rank_relevant_grouped(query_emb, cand[keep], rel, chunk_size=chunk_size).ranks_in_pool()


# --------------------------------------------------------------------------- per-query metrics
# Every function takes inf-padded ranks (n, m) (any order) and returns one value per query;
# NaN for a query with no relevant candidate.


def _prep(ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = np.sort(np.atleast_2d(np.asarray(ranks, dtype=float)), axis=1)
    n_rel = np.isfinite(r).sum(1)
    return r, n_rel


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def average_precision(ranks: np.ndarray) -> np.ndarray:
    """AP over the full ranking: (1/|R|) * sum_i i / rank_i over the sorted ranks."""
    r, n_rel = _prep(ranks)
    i = np.arange(1, r.shape[1] + 1)
    return _safe_div((i / r).sum(1), n_rel)


def ap_at_k_lareqa(ranks: np.ndarray, k: int = 20) -> np.ndarray:
    """LAReQA / XTREME-R AP@k: sum_{rank_i <= k} i / rank_i, divided by min(k, |R|)
    (trec_eval's AP@k divides by |R|). Its mean is XTREME-R's mAP@20 for k = 20."""
    r, n_rel = _prep(ranks)
    i = np.arange(1, r.shape[1] + 1)
    return _safe_div(np.where(r <= k, i / r, 0.0).sum(1), np.minimum(k, n_rel))


def recall_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """|relevant within the top k| / |R| (LAReQA's R@k; equals trec_eval's recall_k)."""
    r, n_rel = _prep(ranks)
    return _safe_div((r <= k).sum(1), n_rel)


def precision_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """|relevant within the top k| / k."""
    r, n_rel = _prep(ranks)
    return np.where(n_rel > 0, (r <= k).sum(1) / k, np.nan)


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
    return _safe_div(dcg, idcg)


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


# --------------------------------------------------------------------------- bootstrap


def _as_2d(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return v[:, None] if v.ndim == 1 else v


def _group_codes(groups: np.ndarray | None, n: int) -> tuple[np.ndarray, int]:
    """Integer code per row (groups in sorted order) and the number of groups."""
    if groups is None:
        return np.zeros(n, dtype=np.int64), 1
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups has shape {groups.shape}, expected ({n},)")
    labels, codes = np.unique(groups, return_inverse=True)
    return codes.astype(np.int64), len(labels)


def bootstrap_weight_batches(groups: np.ndarray | None, n: int, seed: int, n_rows: int, batch: int = 1000):
    """Yield ``(b, n_rows)`` resample-count batches, ``n`` resamples in all, from one seeded
    stream (bounded memory; the stream does not depend on ``batch``). Resample r draws, for
    every row slot of group g, one of g's rows uniformly: a bootstrap within each group."""
    codes, _ = _group_codes(groups, n_rows)
    order = np.argsort(codes, kind="stable")  # rows grouped; slot s draws within its group
    sizes = np.bincount(codes)
    starts = np.repeat(np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes)
    high = np.repeat(sizes, sizes)
    rng = np.random.default_rng(seed)
    for first in range(0, n, batch):
        b = min(batch, n - first)
        draw = order[starts + rng.integers(0, high, size=(b, n_rows))]  # row indices, (b, n_rows)
        flat = (draw + np.arange(b)[:, None] * n_rows).ravel()
        yield np.bincount(flat, minlength=b * n_rows).reshape(b, n_rows).astype(float)


def bootstrap_weights(groups: np.ndarray | None, n: int, seed: int, n_rows: int | None = None) -> np.ndarray:
    """``(n, n_rows)`` resample counts, one bootstrap resample per row: each group's queries
    drawn with replacement within the group. Depends only on ``groups``, ``n`` and ``seed``,
    so every system evaluated on the same queries gets the same resamples (paired)."""
    n_rows = len(groups) if groups is not None else n_rows
    if n_rows is None:
        raise ValueError("give groups or n_rows")
    return np.concatenate(list(bootstrap_weight_batches(groups, n, seed, n_rows)) or [np.zeros((0, n_rows))])


def _cell_design(values: np.ndarray, groups) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Rows spread into (group, column) cells: values (NaN → 0) and presence, (n, G*C) each."""
    v = _as_2d(values)
    n, c = v.shape
    codes, n_groups = _group_codes(groups, n)
    present = np.isfinite(v)
    x = np.zeros((n, n_groups, c))
    p = np.zeros((n, n_groups, c))
    x[np.arange(n), codes] = np.where(present, v, 0.0)
    p[np.arange(n), codes] = present
    return x.reshape(n, -1), p.reshape(n, -1), n_groups, c


def cell_means(values: np.ndarray, groups: np.ndarray | None, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted mean of each (group, column) cell, ignoring NaN.

    ``values``: (n,) or (n, c); ``weights``: (B, n) resample counts or None (observed data).
    Returns (B, G, c), or (G, c) without weights; NaN for an empty cell. Groups in sorted order.
    """
    v = _as_2d(values)
    codes, n_groups = _group_codes(groups, len(v))
    w = np.ones((1, len(v))) if weights is None else np.asarray(weights, dtype=float)
    if len(codes) > 1 and np.any(np.diff(codes) < 0):  # make each group a contiguous slice
        order = np.argsort(codes, kind="stable")
        codes, v, w = codes[order], v[order], w[:, order]
    bounds = np.searchsorted(codes, np.arange(n_groups + 1))
    present = np.isfinite(v)
    filled = np.where(present, v, 0.0)
    out = np.full((len(w), n_groups, v.shape[1]), np.nan)
    for g in range(n_groups):
        lo, hi = bounds[g], bounds[g + 1]
        out[:, g] = _safe_div(w[:, lo:hi] @ filled[lo:hi], w[:, lo:hi] @ present[lo:hi].astype(float))
    return out[0] if weights is None else out


def select_mean(cells: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Mean of the non-NaN cells picked by each mask: cells (B, K) or (K,), masks (S, K) →
    (B, S) or (S,). The macro mean of a setting is its cells' mean."""
    c = np.asarray(cells, dtype=float)
    ok = np.isfinite(c)
    m = np.asarray(masks, dtype=float).T
    return _safe_div(np.where(ok, c, 0.0) @ m, ok.astype(float) @ m)


def _mean_over_cells(cells: np.ndarray) -> np.ndarray:
    """Mean over the last two axes, ignoring NaN cells (NaN if all are)."""
    ok = np.isfinite(cells)
    return _safe_div(np.where(ok, cells, 0.0).sum((-2, -1)), ok.sum((-2, -1)))


def macro_mean(values: np.ndarray, groups: np.ndarray | None = None) -> float:
    """Mean over non-empty (group, column) cells of the cell means (NaN = absent).

    1-D values with query-language groups: mean over languages of the per-language means.
    (n, c) values with NaN outside a setting's cells: the paper's mean over settings.
    """
    return float(_mean_over_cells(cell_means(values, groups)))


def _boot_stats(values: np.ndarray, groups, n: int, seed: int) -> np.ndarray:
    v = _as_2d(values)
    out = [_mean_over_cells(cell_means(v, groups, w)) for w in bootstrap_weight_batches(groups, n, seed, len(v))]
    return np.concatenate(out) if out else np.zeros(0)


def bootstrap_ci(
    values: np.ndarray,
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    groups: np.ndarray | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap CI of :func:`macro_mean`, resampling queries within groups."""
    lo, hi = np.nanquantile(_boot_stats(values, groups, n, seed), [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison of two systems: ``delta`` = macro mean of a - b."""

    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    n_queries: int


def paired_test(
    a: np.ndarray,
    b: np.ndarray,
    *,
    n: int = 10000,
    seed: int = 0,
    alpha: float = 0.05,
    groups: np.ndarray | None = None,
    method: str = "permutation",
) -> PairedTest:
    """Two-sided paired test of the difference of macro means over the same queries.

    ``method="permutation"``: sign-flip randomisation (each query's differences keep or flip
    their sign together), p = (1 + #{|T*| >= |T|}) / (n + 1). ``method="bootstrap"``: paired
    bootstrap within groups, shifted to the null: p = (1 + #{|T* - T| >= |T|}) / (n + 1).
    The CI is the paired percentile bootstrap of the difference either way. Cells where
    either system lacks a value are left out of both.
    """
    a, b = _as_2d(a), _as_2d(b)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in shape: {a.shape} vs {b.shape}")
    d = a - b  # NaN where either is missing
    observed = macro_mean(d, groups)
    n_queries = int(np.isfinite(d).any(1).sum())
    boot = _boot_stats(d, groups, n, seed)
    lo, hi = np.nanquantile(boot, [alpha / 2, 1 - alpha / 2])
    if method == "bootstrap":
        null = boot - observed
    elif method == "permutation":
        null = _signflip_stats(d, groups, n, seed)
    else:
        raise ValueError(f"method must be 'permutation' or 'bootstrap', got {method!r}")
    tol = 1e-12 * max(1.0, abs(observed))
    p = (1 + np.sum(np.abs(null) >= abs(observed) - tol)) / (n + 1)
    return PairedTest(observed, float(lo), float(hi), float(min(p, 1.0)), n_queries)


def _signflip_stats(d: np.ndarray, groups, n: int, seed: int, batch: int = 1000) -> np.ndarray:
    x, p, _, _ = _cell_design(d, groups)
    counts = p.sum(0)
    rng = np.random.default_rng([seed, 1])
    out = []
    for start in range(0, n, batch):
        signs = rng.choice(np.array([-1.0, 1.0]), size=(min(batch, n - start), len(x)))
        cells = _safe_div(signs @ x, np.broadcast_to(counts, (len(signs), len(counts))))
        ok = np.isfinite(cells)
        out.append(_safe_div(np.where(ok, cells, 0.0).sum(1), ok.sum(1)))
    return np.concatenate(out)
