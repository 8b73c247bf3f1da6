"""Macro means, the bootstrap over queries and paired tests (notebook 04 §3, §7).

Queries are resampled within their group (query language) and the statistic is the macro mean
over (group, column) cells; the resample depends only on the groups, ``n`` and ``seed``, so two
systems evaluated on the same queries get the same resamples (paired).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .per_query import safe_div


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
        out[:, g] = safe_div(w[:, lo:hi] @ filled[lo:hi], w[:, lo:hi] @ present[lo:hi].astype(float))
    return out[0] if weights is None else out


def select_mean(cells: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Mean of the non-NaN cells picked by each mask: cells (B, K) or (K,), masks (S, K) →
    (B, S) or (S,). The macro mean of a setting is its cells' mean."""
    c = np.asarray(cells, dtype=float)
    ok = np.isfinite(c)
    m = np.asarray(masks, dtype=float).T
    return safe_div(np.where(ok, c, 0.0) @ m, ok.astype(float) @ m)


def _mean_over_cells(cells: np.ndarray) -> np.ndarray:
    """Mean over the last two axes, ignoring NaN cells (NaN if all are)."""
    ok = np.isfinite(cells)
    return safe_div(np.where(ok, cells, 0.0).sum((-2, -1)), ok.sum((-2, -1)))


def macro_mean(values: np.ndarray, groups: np.ndarray | None = None) -> float:
    """Mean over non-empty (group, column) cells of the cell means (NaN = absent).

    1-D values with query-language groups: mean over languages of the per-language means.
    (n, c) values with NaN outside a setting's cells: the paper's mean over settings.
    """
    return float(_mean_over_cells(cell_means(values, groups)))


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
    n_groups = _group_codes(groups, len(a))[1]
    return paired_tests(a, b, np.ones((1, n_groups, a.shape[1]), bool), n=n, seed=seed, alpha=alpha,
                        groups=groups, method=method)[0]


def paired_tests(
    a: np.ndarray,
    b: np.ndarray,
    selections: np.ndarray,
    *,
    n: int = 10000,
    seed: int = 0,
    alpha: float = 0.05,
    groups: np.ndarray | None = None,
    method: str = "permutation",
) -> list[PairedTest]:
    """:func:`paired_test` for each selection of (group, column) cells at once (notebook 04 §7).

    ``selections``: (S, G, C) booleans over the cells (groups in sorted order, as
    :func:`cell_means`). Each test equals :func:`paired_test` on ``a`` and ``b`` with NaN outside
    its cells: the resamples and sign flips depend only on the groups, ``n`` and ``seed``, so they
    are drawn once and every selection averages its own cells of them.
    """
    a, b = _as_2d(a), _as_2d(b)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in shape: {a.shape} vs {b.shape}")
    if method not in ("permutation", "bootstrap"):
        raise ValueError(f"method must be 'permutation' or 'bootstrap', got {method!r}")
    d = a - b  # NaN where either is missing
    codes, n_groups = _group_codes(groups, len(d))
    sel = np.asarray(selections, bool)
    if sel.shape[1:] != (n_groups, d.shape[1]):
        raise ValueError(f"selections have shape {sel.shape}, expected (S, {n_groups}, {d.shape[1]})")
    masks = sel.reshape(len(sel), -1)
    observed = select_mean(cell_means(d, groups).ravel(), masks)
    boot = np.concatenate([select_mean(cell_means(d, groups, w).reshape(len(w), -1), masks)
                           for w in bootstrap_weight_batches(groups, n, seed, len(d))]) if n else np.zeros((0, len(sel)))
    null = boot - observed if method == "bootstrap" else _signflip_cells(d, groups, n, seed, masks)
    finite = np.isfinite(d)
    tests = []
    for s in range(len(sel)):
        lo, hi = np.nanquantile(boot[:, s], [alpha / 2, 1 - alpha / 2])
        tol = 1e-12 * max(1.0, abs(observed[s]))
        p = (1 + np.sum(np.abs(null[:, s]) >= abs(observed[s]) - tol)) / (n + 1)
        n_queries = int((finite & sel[s][codes]).any(1).sum())
        tests.append(PairedTest(float(observed[s]), float(lo), float(hi), float(min(p, 1.0)), n_queries))
    return tests


def _signflip_cells(d: np.ndarray, groups, n: int, seed: int, masks: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Sign-flip statistics, (n, S): each query's differences keep or flip their sign together;
    selection s averages its non-empty cells."""
    x, p, _, _ = _cell_design(d, groups)
    counts = p.sum(0)
    rng = np.random.default_rng([seed, 1])
    out = []
    for start in range(0, n, batch):
        signs = rng.choice(np.array([-1.0, 1.0]), size=(min(batch, n - start), len(x)))
        cells = safe_div(signs @ x, np.broadcast_to(counts, (len(signs), len(counts))))
        out.append(select_mean(cells, masks))
    return np.concatenate(out) if out else np.zeros((0, len(masks)))
