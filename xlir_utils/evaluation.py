"""Zero-shot evaluation in LAReQA's three settings, from one pair of embedding matrices.

One ranking pass (:func:`xlir_utils.metrics.rank_relevant_grouped`) gives every relevant
candidate's rank in the pooled (multilingual) ranking and within its own language; every
setting is read off those ranks:

* **mono** — queries in X against the candidates of X (relevant: the answer in X);
* **cross** — queries in X against the candidates of Y != X, one setting per pair; queries
  with no answer in Y are dropped (MLQA-R);
* **multi** — queries in X against the pool of every language's candidates.

Macro means follow the paper: mono = mean over the X-X settings, cross = mean over the X-Y
settings, multi = mean over query languages. Confidence intervals resample queries within
their query language (the same resamples for every system evaluated on the same set).
This module never encodes: it takes embeddings (L2-normalise them for cosine scores).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import metrics as M

__all__ = ["SETTINGS", "TABLE_COLUMNS", "Evaluation", "evaluate", "paired_comparison", "paired_matrices"]

SETTINGS = ("mono", "cross", "multi")
POOL = "pool"
# The engine's columns; the caller prepends the labels of the system it evaluated
# (:func:`xlir_utils.systems.label_rows`).
TABLE_COLUMNS = ["dataset", "setting", "query_lang", "cand_lang", "metric", "value", "ci_low", "ci_high", "n_queries"]
MULTI_ONLY = ("rank_distance", "same_lang_top10", "same_lang_pool_share")


@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate` returns.

    ``table``: tidy rows (:data:`TABLE_COLUMNS`). ``per_query``: one row per (query,
    candidate pool) with the per-query metric values (``cand_lang`` is a language, or
    ``"pool"`` for the multilingual setting). ``ranks``: the raw ranks (pool and per language).
    ``matrices``: per metric, an ``(n_queries, n_languages + 1)`` array (language columns, then
    the pool; NaN outside a setting), with ``query_codes`` the query-language codes: what the
    seed statistics resample (:mod:`xlir_utils.seed_statistics`).
    """

    table: pd.DataFrame
    per_query: pd.DataFrame
    ranks: M.RelevantRanks
    queries: pd.DataFrame
    candidates: pd.DataFrame
    matrices: dict
    query_codes: np.ndarray


def _codes(labels: pd.Series, languages: tuple[str, ...], what: str) -> np.ndarray:
    codes = pd.Categorical(labels, categories=list(languages)).codes.astype(np.int64)
    if (codes < 0).any():
        bad = sorted(set(labels[codes < 0]))
        raise ValueError(f"{what} in languages {bad} not listed in the retrieval set's languages {languages}")
    return codes


def _check_inputs(rset, query_emb, cand_emb) -> None:
    if len(query_emb) != len(rset.queries):
        raise ValueError(f"{len(query_emb)} query embeddings for {len(rset.queries)} queries of {rset.name}")
    if len(cand_emb) != len(rset.candidates):
        raise ValueError(f"{len(cand_emb)} candidate embeddings for {len(rset.candidates)} candidates of {rset.name}")
    if len(rset.relevant) != len(rset.queries):
        raise ValueError(f"{rset.name}: {len(rset.relevant)} relevant sets for {len(rset.queries)} queries")


def _metric_columns(ranks: np.ndarray, ks: tuple[int, ...], map_k: int, ndcg_k: int) -> dict[str, np.ndarray]:
    cols = {"map": M.average_precision(ranks), f"map@{map_k}_lareqa": M.ap_at_k_lareqa(ranks, map_k)}
    for k in ks:
        cols[f"r@{k}"] = M.recall_at_k(ranks, k)
    cols["mrr"] = M.reciprocal_rank(ranks)
    cols[f"ndcg@{ndcg_k}"] = M.ndcg_at_k(ranks, ndcg_k)
    return cols


def _value_matrices(rr, q_codes, c_codes, n_lang, settings, ks, map_k, ndcg_k, same_lang_k):
    """Per metric, an (n_queries, n_lang + 1) matrix: language columns then the pool; NaN = absent."""
    n_q = len(q_codes)
    diag = np.arange(n_lang)[None, :] == q_codes[:, None]
    allowed = np.zeros((n_q, n_lang + 1), dtype=bool)
    if "mono" in settings:
        allowed[:, :n_lang] |= diag
    if "cross" in settings:
        allowed[:, :n_lang] |= ~diag
    allowed[:, n_lang] = "multi" in settings
    columns = [rr.ranks_in_group(y) for y in range(n_lang)] + [rr.ranks_in_pool()]
    n_rel = np.stack([np.isfinite(r).sum(1) for r in columns], 1)
    allowed &= n_rel > 0
    mats: dict[str, np.ndarray] = {}
    for j, ranks in enumerate(columns):
        if not allowed[:, j].any():
            continue
        for name, vals in _metric_columns(ranks, ks, map_k, ndcg_k).items():
            mats.setdefault(name, np.full((n_q, n_lang + 1), np.nan))[:, j] = vals
    if "multi" in settings:
        extra = {"rank_distance": M.rank_distance(columns[-1])}
        if rr.top is not None:
            extra[f"same_lang_top{same_lang_k}"] = M.same_language_share(rr.top, c_codes, q_codes)
            extra["same_lang_pool_share"] = M.pool_language_share(c_codes, q_codes)
        for name, vals in extra.items():
            mats.setdefault(name, np.full((n_q, n_lang + 1), np.nan))[:, n_lang] = vals
    for m in mats.values():
        m[~allowed] = np.nan
    return mats, n_rel, allowed


def _row_specs(languages, settings, allowed, q_codes):
    """(setting, query_lang, cand_lang, cell mask (n_lang, n_lang + 1)) for every table row."""
    L = len(languages)
    has = np.zeros((L, L + 1), dtype=bool)  # cells with any query
    for x in range(L):
        has[x] = allowed[q_codes == x].any(0)
    specs = []

    def add(setting, ql, cl, mask):
        mask = mask & has
        if mask.any():
            specs.append((setting, ql, cl, mask))

    eye = np.zeros((L, L + 1), dtype=bool)
    eye[np.arange(L), np.arange(L)] = True
    off = np.zeros((L, L + 1), dtype=bool)
    off[:, :L] = ~np.eye(L, dtype=bool)
    pool = np.zeros((L, L + 1), dtype=bool)
    pool[:, L] = True
    row = lambda x: np.arange(L)[:, None] == x  # noqa: E731
    if "mono" in settings:
        add("mono", "all", "all", eye)
        for x, lx in enumerate(languages):
            add("mono", lx, lx, eye & row(x))
    if "cross" in settings:
        add("cross", "all", "all", off)
        for x, lx in enumerate(languages):
            add("cross", lx, "all", off & row(x))
    if "multi" in settings:
        add("multi", "all", POOL, pool)
        for x, lx in enumerate(languages):
            add("multi", lx, POOL, pool & row(x))
    if "mono" in settings or "cross" in settings:
        for x, lx in enumerate(languages):
            for y, ly in enumerate(languages):
                cell = np.zeros((L, L + 1), dtype=bool)
                cell[x, y] = True
                add("pair", lx, ly, cell)
    return specs


def _cell_grid(cells: np.ndarray, present: np.ndarray, n_lang: int) -> np.ndarray:
    """(..., G_present, C) cell means → (..., n_lang * C), languages without queries NaN."""
    shape = cells.shape[:-2] + (n_lang, cells.shape[-1])
    full = np.full(shape, np.nan)
    full[..., present, :] = cells
    return full.reshape(*cells.shape[:-2], -1)


def _tidy_table(mats, allowed, q_codes, languages, settings, bootstrap, seed, alpha, meta):
    L = len(languages)
    specs = _row_specs(languages, settings, allowed, q_codes)
    masks = np.stack([mask.ravel() for *_, mask in specs]) if specs else np.zeros((0, L * (L + 1)))
    # queries with a value in any of the row's cells (every metric is defined where allowed)
    n_queries = [int((mask[q_codes] & allowed).any(1).sum()) for *_, mask in specs]
    present = np.unique(q_codes)
    names = list(mats)
    stacked = np.concatenate([mats[n] for n in names], axis=1)  # one pass over the weights for all metrics
    width = L + 1

    def row_stats(weights):
        cells = M.cell_means(stacked, q_codes, weights)  # (..., G, n_metrics * width)
        return {name: M.select_mean(_cell_grid(cells[..., i * width:(i + 1) * width], present, L), masks)
                for i, name in enumerate(names)}

    values = row_stats(None)
    lo = {name: np.full(len(specs), np.nan) for name in names}
    hi = {name: np.full(len(specs), np.nan) for name in names}
    if bootstrap:
        # one seeded resample stream over query languages: the same for every system on this set
        batches = [row_stats(w) for w in M.bootstrap_weight_batches(q_codes, bootstrap, seed, len(q_codes))]
        for name in names:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: rows skipped below
                lo[name], hi[name] = np.nanquantile(np.concatenate([b[name] for b in batches]),
                                                    [alpha / 2, 1 - alpha / 2], axis=0)
    rows = []
    for name in mats:
        for i, ((setting, ql, cl, _), n_q) in enumerate(zip(specs, n_queries)):
            if name in MULTI_ONLY and setting != "multi" or not np.isfinite(values[name][i]):
                continue
            rows.append({**meta, "setting": setting, "query_lang": ql, "cand_lang": cl, "metric": name,
                         "value": float(values[name][i]), "ci_low": float(lo[name][i]),
                         "ci_high": float(hi[name][i]), "n_queries": n_q})
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    order = {s: i for i, s in enumerate(["mono", "cross", "multi", "pair"])}
    table["_o"] = table.setting.map(order)
    table["_a"] = table.query_lang != "all"
    return table.sort_values(["_o", "_a", "query_lang", "cand_lang", "metric"], kind="stable").drop(
        columns=["_o", "_a"]).reset_index(drop=True)


def _per_query_frame(rset, mats, n_rel, allowed, languages) -> pd.DataFrame:
    L = len(languages)
    q = rset.queries
    q_idx, col = np.nonzero(allowed)
    q_lang = q.lang.to_numpy()[q_idx]
    cand_lang = np.array(list(languages) + [POOL], dtype=object)[col]
    setting = np.where(col == L, "multi", np.where(cand_lang == q_lang, "mono", "cross"))
    frame = pd.DataFrame({
        "query_id": q.query_id.to_numpy()[q_idx], "question_id": q.question_id.to_numpy()[q_idx],
        "query_lang": q_lang, "cand_lang": cand_lang, "setting": setting, "n_rel": n_rel[q_idx, col],
    })
    for name, mat in mats.items():
        frame[name] = mat[q_idx, col]
    return frame


def evaluate(
    rset,
    query_emb: np.ndarray,
    cand_emb: np.ndarray,
    *,
    settings: tuple[str, ...] = SETTINGS,
    ks: tuple[int, ...] = (1, 10),
    map_k: int = 20,
    ndcg_k: int = 10,
    same_lang_k: int = 10,
    bootstrap: int = 1000,
    seed: int = 13,
    alpha: float = 0.05,
    chunk_size: int = 1024,
) -> Evaluation:
    """Every setting of ``rset`` from one set of embeddings (row i = query/candidate i);
    notebook 04 §3 (through :func:`xlir_utils.systems.evaluate_systems`), notebook 05 §5 (LIR).

    Args:
        rset: a retrieval set (queries, candidates, relevance; :mod:`xlir_utils.data`).
        query_emb: ``(n_queries, dim)`` L2-normalised query embeddings, in ``rset.queries`` order.
        cand_emb: ``(n_candidates, dim)`` L2-normalised candidate embeddings.
        settings: which of mono, cross and multi to compute.
        ks: the cut-offs of ``r@k``; ``map_k`` and ``ndcg_k`` those of ``map@k_lareqa`` and ``ndcg@k``.
        same_lang_k: the top-k of ``same_lang_top<k>`` (multi only).
        bootstrap: resamples for the 95 % intervals (0 = none: the ci columns are NaN).
        seed: the bootstrap's seed (the same resamples for every system on the same set).

    Returns:
        An :class:`Evaluation`. Its ``table`` has the engine's columns (:data:`TABLE_COLUMNS`), no
        system labels: the caller adds them. Metrics: ``map`` (full ranking), ``map@20_lareqa``
        (divisor min(20, |R|)), ``r@k`` (|rel in top k| / |R|), ``mrr``, ``ndcg@10``; multi also
        ``rank_distance``, ``same_lang_top10`` and ``same_lang_pool_share`` (the top-10 share
        expected without bias). Ties between scores rank pessimistically.

    Example::

        rset = load_retrieval_set("xquad-r", articles=1)
        q = encode(model, rset.queries.text.tolist(), "query")
        c = encode(model, rset.candidate_texts("sentence"), "passage")
        t = evaluate(rset, q, c, bootstrap=0).table
        t[(t.setting == "multi") & (t.metric == "map") & (t.query_lang == "all")].value
    """
    unknown = set(settings) - set(SETTINGS)
    if unknown or not settings:
        raise ValueError(f"settings must be a non-empty subset of {SETTINGS}, got {settings!r}")
    _check_inputs(rset, query_emb, cand_emb)
    languages = tuple(rset.languages)
    q_codes = _codes(rset.queries.lang, languages, "queries")
    c_codes = _codes(rset.candidates.lang, languages, "candidates")
    need_groups = "mono" in settings or "cross" in settings
    rr = M.rank_relevant_grouped(
        query_emb, cand_emb, rset.relevant, c_codes if need_groups else None,
        top_k=same_lang_k if "multi" in settings else 0, chunk_size=chunk_size,
    )
    if not need_groups:  # group ranks were not computed: group = language for per-column reads
        rr = M.RelevantRanks(rr.positions, rr.pool_rank, rr.group_rank,
                             np.where(rr.positions >= 0, c_codes[np.clip(rr.positions, 0, None)], -1), rr.top)
    mats, n_rel, allowed = _value_matrices(rr, q_codes, c_codes, len(languages), settings, ks, map_k,
                                           ndcg_k, same_lang_k)
    meta = {"dataset": rset.name}
    table = _tidy_table(mats, allowed, q_codes, languages, settings, bootstrap, seed, alpha, meta)
    per_query = _per_query_frame(rset, mats, n_rel, allowed, languages)
    return Evaluation(table, per_query, rr, rset.queries, rset.candidates, mats, q_codes)


def paired_comparison(
    per_query_a: pd.DataFrame,
    per_query_b: pd.DataFrame,
    *,
    metrics: tuple[str, ...] = ("map",),
    n: int = 10000,
    seed: int = 13,
    alpha: float = 0.05,
    method: str = "permutation",
) -> pd.DataFrame:
    """System a vs b on the same queries (two :attr:`Evaluation.per_query` frames).

    One row per (setting, query_lang, metric): macro means of both, ``delta`` = a - b, its
    paired bootstrap CI and a two-sided p-value (:func:`xlir_utils.metrics.paired_test`).
    """
    key = ["query_id", "cand_lang"]
    if per_query_a[key].duplicated().any() or per_query_b[key].duplicated().any():
        raise ValueError("per-query frames must have one row per (query_id, cand_lang)")
    merged = per_query_a.merge(per_query_b, on=key, how="outer", suffixes=("_a", "_b"), indicator=True)
    if (merged["_merge"] != "both").any():
        raise ValueError("the two per-query frames cover different (query, pool) pairs: evaluate both "
                         "systems on the same retrieval set and settings")
    merged["query_lang"] = merged["query_lang_a"]
    queries = merged[["query_id", "query_lang"]].drop_duplicates("query_id").reset_index(drop=True)
    qpos = pd.Series(np.arange(len(queries)), index=queries.query_id)
    langs = sorted(merged.cand_lang[merged.cand_lang != POOL].unique())
    cols = langs + [POOL]
    cpos = {c: i for i, c in enumerate(cols)}
    qi = qpos[merged.query_id].to_numpy()
    ci = merged.cand_lang.map(cpos).to_numpy()
    mats_a, mats_b = {}, {}
    for metric in metrics:
        if f"{metric}_a" not in merged:
            raise KeyError(f"metric {metric!r} not in the per-query frames")
        mats_a[metric] = np.full((len(queries), len(cols)), np.nan)
        mats_b[metric] = mats_a[metric].copy()
        mats_a[metric][qi, ci] = merged[f"{metric}_a"].to_numpy(dtype=float)
        mats_b[metric][qi, ci] = merged[f"{metric}_b"].to_numpy(dtype=float)
    return paired_matrices(mats_a, mats_b, queries.query_lang.to_numpy(), langs, metrics=metrics, n=n, seed=seed,
                           alpha=alpha, method=method)


def paired_matrices(
    mats_a: dict,
    mats_b: dict,
    query_langs: np.ndarray,
    languages: Sequence[str],
    *,
    metrics: tuple[str, ...] = ("map",),
    n: int = 10000,
    seed: int = 13,
    alpha: float = 0.05,
    method: str = "permutation",
) -> pd.DataFrame:
    """:func:`paired_comparison` on per-query matrices (metric -> (n_queries, len(languages) + 1):
    language columns, then the pool, NaN outside a setting; :attr:`Evaluation.matrices`), with
    each query's language in ``query_langs``. Every (setting, query language) is tested on the
    same resamples, drawn once per metric (:func:`xlir_utils.metrics.paired_tests`)."""
    cols = list(languages) + [POOL]
    group_names = sorted(set(query_langs))  # the cells' group order (sorted, as the metrics module's)
    own = np.array([[c == g for c in cols] for g in group_names])  # (G, C): the group's own column
    is_pool = np.zeros_like(own)
    is_pool[:, -1] = True
    cell_masks = {"mono": own & ~is_pool, "cross": ~own & ~is_pool, "multi": is_pool}
    rows = []
    for metric in metrics:
        a, b = np.asarray(mats_a[metric], float), np.asarray(mats_b[metric], float)
        present = _present_cells(a - b, query_langs, group_names, len(cols))
        selections, keys = [], []
        for setting, mask in cell_masks.items():
            for ql in ["all", *group_names]:
                picked = mask & (np.array(group_names)[:, None] == ql) if ql != "all" else mask
                if (picked & present).any():
                    selections.append(picked)
                    keys.append((setting, ql))
        if not selections:
            continue
        sel = np.stack(selections)
        tests = M.paired_tests(a, b, sel, n=n, seed=seed, alpha=alpha, groups=query_langs, method=method)
        flat = sel.reshape(len(sel), -1)
        means_a = M.select_mean(M.cell_means(a, query_langs).ravel(), flat)
        means_b = M.select_mean(M.cell_means(b, query_langs).ravel(), flat)
        for (setting, ql), test, va, vb in zip(keys, tests, means_a, means_b):
            rows.append({
                "setting": setting, "query_lang": ql,
                "cand_lang": POOL if setting == "multi" else ("all" if setting == "cross" or ql == "all" else ql),
                "metric": metric, "value_a": float(va), "value_b": float(vb),
                "delta": test.delta, "ci_low": test.ci_low, "ci_high": test.ci_high,
                "p_value": test.p_value, "n_queries": test.n_queries,
            })
    return pd.DataFrame(rows)


def _present_cells(d: np.ndarray, query_langs: np.ndarray, group_names: list, n_cols: int) -> np.ndarray:
    """(G, C): the cells where some query has a paired value."""
    codes = pd.Categorical(query_langs, categories=group_names).codes
    present = np.zeros((len(group_names), n_cols), bool)
    rows, cols = np.nonzero(np.isfinite(d))
    present[codes[rows], cols] = True
    return present
