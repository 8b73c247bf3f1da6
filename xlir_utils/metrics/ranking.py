"""Exact ranks of every relevant candidate, in the pooled ranking and within its language
(the engine behind notebook 04 §3; no cut-off).

:func:`rank_relevant_grouped` scores every query against every candidate (dot product: pass
L2-normalised embeddings for cosine), in chunks of queries so memory stays bounded, and returns
the exact 1-based rank of every relevant candidate in the full ranking, both in the whole pool
and within its own candidate group (language). Ranks are held as a float array
``(n_queries, max |R|)``, sorted ascending, padded with ``inf``.

**Ties are pessimistic**: a relevant candidate is ranked after every non-relevant candidate
with an equal score (rank = 1 + #{non-relevant with score >= s} + #{relevant ranked before
it}). With distinct scores this is the one ranking; with ties it is what trec_eval (and so
``ir_measures``' default provider, pytrec_eval) gives when the non-relevant documents' docnos
sort after the relevant ones (trec_eval breaks ties by docno, descending). The result does not
depend on candidate order. Ties occur in practice only between identical candidate texts (with
sentence-only candidates, 11 of XQuAD-R's 13,090 queries have a relevant sentence whose exact
duplicate elsewhere is not relevant; none in MLQA-R). :func:`pessimistic_order` writes out one
query's whole ranking by this rule (the explorer of notebook 06 ranks by it).

**Speed.** Scores are float32 (NumPy BLAS: torch's MKL sgemm is slower on AMD CPUs); counts
use NumPy compares summed as uint8/uint16, several times faster than torch bool reductions on
CPU; torch serves only ``topk``. Full XQuAD-R (13,090 x 13,014), every setting: a few seconds
on 2 cores (``benchmarks/evaluate.py``). :mod:`.reference` holds a short, readable version of
the same computation (XTREME-R's ``utils_lareqa.py`` style) for readers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


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


def pessimistic_order(scores: ArrayLike, relevant: ArrayLike = ()) -> np.ndarray:
    """One query's candidate positions in the engine's ranking (notebook 06 §2): decreasing
    score; among equal scores every non-relevant candidate before the ``relevant`` ones, then
    candidate order. A relevant candidate's 1-based place in it is its pessimistic rank, as
    :func:`rank_relevant_grouped` counts it (tied relevant candidates share out the same ranks)."""
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().numpy()
    scores = np.asarray(scores).reshape(-1)
    is_relevant = np.zeros(len(scores), dtype=bool)
    is_relevant[np.asarray(relevant, dtype=np.int64)] = True
    return np.lexsort((np.arange(len(scores)), is_relevant, -scores))  # the last key sorts first


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
