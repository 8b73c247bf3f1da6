"""Metrics: exact ranks (ties, chunking, candidate order), per-query metrics against
hand arithmetic and ``ir_measures``, the LAReQA AP@k divisor, the readable reference against the
engine on XQuAD-R with ties, bootstrap and paired tests."""
from __future__ import annotations

import ir_measures
import numpy as np
import pytest
from conftest import random_unit_embeddings
from ir_measures import AP, R, RR, nDCG

from xlir_utils import metrics as M
from xlir_utils.data import load_retrieval_set
from xlir_utils.metrics import reference
from xlir_utils.metrics.ranking import pessimistic_order

# --------------------------------------------------------------------------- helpers


def pad_ranks(ranks) -> np.ndarray:
    """Ragged per-query ranks -> sorted float array (n, max len) padded with inf."""
    width = max((len(r) for r in ranks), default=0)
    out = np.full((len(ranks), max(width, 1)), np.inf)
    for i, r in enumerate(ranks):
        out[i, : len(r)] = np.sort(np.asarray(r, dtype=float))
    return out


def brute_force_ranks(scores: np.ndarray, relevant: list[np.ndarray], pool=None) -> np.ndarray:
    """Reference: sort each row by (score desc, non-relevant first) and read off positions."""
    out = []
    for i, rel in enumerate(relevant):
        cand = np.arange(scores.shape[1]) if pool is None else np.flatnonzero(pool)
        is_rel = np.isin(cand, rel)
        order = np.lexsort((is_rel, -scores[i, cand]))  # last key primary: score desc, then rel last
        out.append(np.flatnonzero(is_rel[order]) + 1.0)
    return pad_ranks(out)


def random_case(rng, n_q=25, n_c=40, n_groups=3, max_rel=9, levels=4):
    """Integer-valued embeddings: scores are exact small integers, so ties abound."""
    d = 6
    q = rng.integers(-1, 2, size=(n_q, d)).astype(np.float32)
    c = rng.integers(-levels // 2, levels // 2 + 1, size=(n_c, d)).astype(np.float32)
    groups = rng.integers(0, n_groups, size=n_c)
    relevant = [np.sort(rng.choice(n_c, size=rng.integers(1, max_rel + 1), replace=False)) for _ in range(n_q)]
    return q, c, groups, relevant


def run_and_qrels(scores: np.ndarray, relevant: list[np.ndarray]):
    """ir_measures inputs; relevant docnos sort before non-relevant ones ('a…' < 'n…'), so
    trec_eval's tie-break (docno descending) puts non-relevant first: our pessimistic rule."""
    run, qrels = {}, {}
    for i, rel in enumerate(relevant):
        rel = set(rel.tolist())
        name = {j: f"{'a' if j in rel else 'n'}{j:05d}" for j in range(scores.shape[1])}
        run[f"q{i}"] = {name[j]: float(scores[i, j]) for j in range(scores.shape[1])}
        qrels[f"q{i}"] = {name[j]: 1 for j in rel}
    return run, qrels


def per_query(measures, qrels, run) -> dict:
    out = {m: {} for m in measures}
    for r in ir_measures.iter_calc(measures, qrels, run):
        out[r.measure][r.query_id] = r.value
    return {m: np.array([out[m][f"q{i}"] for i in range(len(qrels))]) for m in measures}


# --------------------------------------------------------------------------- hand-computed


def test_metrics_by_hand():
    # one query, |R| = 3, relevant at ranks 1, 3, 6
    r = pad_ranks([[6, 1, 3]])
    # AP = (1/1 + 2/3 + 3/6) / 3 = (6/6 + 4/6 + 3/6) / 3 = 13/18
    assert M.average_precision(r)[0] == pytest.approx(13 / 18)
    # AP@5, LAReQA divisor min(5, 3) = 3: (1/1 + 2/3) / 3 = 5/9
    assert M.ap_at_k_lareqa(r, 5)[0] == pytest.approx(5 / 9)
    # AP@2: only rank 1 is within the top 2; divisor min(2, 3) = 2: (1/1) / 2
    assert M.ap_at_k_lareqa(r, 2)[0] == pytest.approx(0.5)
    assert M.recall_at_k(r, 1)[0] == pytest.approx(1 / 3)  # 1 of 3 relevant in the top 1
    assert M.recall_at_k(r, 5)[0] == pytest.approx(2 / 3)  # ranks 1 and 3
    assert M.reciprocal_rank(r)[0] == 1.0
    # nDCG@10 = (1/log2 2 + 1/log2 4 + 1/log2 7) / (1/log2 2 + 1/log2 3 + 1/log2 4)
    dcg = 1 + 1 / 2 + 1 / np.log2(7)
    idcg = 1 + 1 / np.log2(3) + 1 / 2
    assert M.ndcg_at_k(r, 10)[0] == pytest.approx(dcg / idcg)
    assert M.rank_distance(r)[0] == 5  # 6 - 1


def test_one_relevant_ap_is_reciprocal_rank():
    r = pad_ranks([[4], [1], [250]])
    np.testing.assert_allclose(M.average_precision(r), [1 / 4, 1, 1 / 250])
    np.testing.assert_allclose(M.reciprocal_rank(r), M.average_precision(r))
    np.testing.assert_allclose(M.rank_distance(r), 0)


def test_no_relevant_gives_nan():
    r = pad_ranks([[], [2]])
    for f in (M.average_precision, M.reciprocal_rank, M.rank_distance):
        assert np.isnan(f(r)[0]) and np.isfinite(f(r)[1])
    assert np.isnan(M.recall_at_k(r, 10)[0]) and np.isnan(M.ndcg_at_k(r, 10)[0])


def test_ap_at_k_divisor_more_and_fewer_relevant_than_k():
    # |R| = 11 > k = 5, relevant at ranks 1..11: 5 hits with precision 1, divisor min(5, 11) = 5
    r = pad_ranks([np.arange(1, 12)])
    assert M.ap_at_k_lareqa(r, 5)[0] == pytest.approx(1.0)  # trec_eval's AP@5 would be 5/11
    # |R| = 2 < k = 20, ranks 1 and 30: only rank 1 counts, divisor min(20, 2) = 2 → 0.5
    r = pad_ranks([[1, 30]])
    assert M.ap_at_k_lareqa(r, 20)[0] == pytest.approx(0.5)
    assert M.average_precision(r)[0] == pytest.approx((1 + 2 / 30) / 2)


def test_pessimistic_ties_by_hand():
    q = np.ones((1, 1), dtype=np.float32)
    c = np.array([[0.9], [0.5], [0.5], [0.1]], dtype=np.float32)  # scores 0.9, 0.5, 0.5, 0.1

    def ranks(rel):
        return M.rank_relevant_grouped(q, c, [np.array(rel)]).ranks_in_pool()[0]

    assert ranks([1])[0] == 3  # candidate 1 ties with non-relevant 2: ranked after it
    np.testing.assert_array_equal(ranks([1, 2]), [2, 3])  # both tied candidates relevant: 2 and 3
    assert ranks([0])[0] == 1


def test_rank_distance_floor_when_all_parallel_answers_lead():
    # 11 "parallel answers" identical to the query direction, 30 others orthogonal to it
    rng = np.random.default_rng(0)
    q = np.zeros((1, 8), dtype=np.float32)
    q[0, 0] = 1
    c = np.zeros((41, 8), dtype=np.float32)
    c[:11, 0] = 1
    c[11:, 1:] = rng.standard_normal((30, 7))
    rel = [np.arange(11)]
    ranks = M.rank_relevant_grouped(q, c, rel).ranks_in_pool()
    np.testing.assert_array_equal(ranks[0], np.arange(1, 12))
    assert M.rank_distance(ranks)[0] == 10  # |R| - 1
    assert M.recall_at_k(ranks, 10)[0] == pytest.approx(10 / 11)


# --------------------------------------------------------------------------- ranks


def test_ranks_match_brute_force_with_ties_and_groups():
    rng = np.random.default_rng(1)
    q, c, groups, relevant = random_case(rng)
    scores = q @ c.T
    rr = M.rank_relevant_grouped(q, c, relevant, groups)
    np.testing.assert_array_equal(rr.ranks_in_pool(), brute_force_ranks(scores, relevant))
    for g in range(3):
        pool = groups == g
        rel_g = [r[pool[r]] for r in relevant]
        expected = brute_force_ranks(scores, rel_g, pool)
        got = rr.ranks_in_group(g)[:, : expected.shape[1]]
        np.testing.assert_array_equal(got, expected)


def test_chunking_is_exact():
    rng = np.random.default_rng(2)
    q, c, groups, relevant = random_case(rng, n_q=50)
    full = M.rank_relevant_grouped(q, c, relevant, groups, top_k=5, chunk_size=10_000)
    for chunk in (1, 7, 16):
        part = M.rank_relevant_grouped(q, c, relevant, groups, top_k=5, chunk_size=chunk)
        np.testing.assert_array_equal(part.pool_rank, full.pool_rank)
        np.testing.assert_array_equal(part.group_rank, full.group_rank)
        np.testing.assert_array_equal(part.positions, full.positions)


def test_invariant_to_candidate_order():
    rng = np.random.default_rng(3)
    q, c, groups, relevant = random_case(rng)
    perm = rng.permutation(len(c))  # new position i holds old candidate perm[i]
    new_pos = np.argsort(perm)
    a = M.rank_relevant_grouped(q, c, relevant, groups, top_k=3)
    b = M.rank_relevant_grouped(q, c[perm], [np.sort(new_pos[r]) for r in relevant], groups[perm], top_k=3)
    np.testing.assert_array_equal(a.ranks_in_pool(), b.ranks_in_pool())
    for g in range(3):
        np.testing.assert_array_equal(a.ranks_in_group(g), b.ranks_in_group(g))
    # top-k scores agree (tied candidates may swap)
    s = q @ c.T
    np.testing.assert_array_equal(np.take_along_axis(s, a.top, 1), np.take_along_axis(s[:, perm], b.top, 1))


def test_float_embeddings_chunking_and_top_k():
    rng = np.random.default_rng(4)
    q = rng.standard_normal((40, 16)).astype(np.float32)
    c = rng.standard_normal((90, 16)).astype(np.float32)
    relevant = [np.sort(rng.choice(90, size=3, replace=False)) for _ in range(40)]
    a = M.rank_relevant_grouped(q, c, relevant, top_k=10, chunk_size=9)
    b = M.rank_relevant_grouped(q, c, relevant, top_k=10, chunk_size=1000)
    np.testing.assert_array_equal(a.pool_rank, b.pool_rank)
    np.testing.assert_array_equal(a.ranks_in_pool(), brute_force_ranks(q @ c.T, relevant))
    np.testing.assert_array_equal(a.top, np.argsort(-(q @ c.T), axis=1, kind="stable")[:, :10])


def test_bad_inputs_fail_clearly():
    q = np.ones((2, 4), dtype=np.float32)
    c = np.ones((3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="relevant sets"):
        M.rank_relevant_grouped(q, c, [np.array([0])])
    with pytest.raises(ValueError, match="out of range"):
        M.rank_relevant_grouped(q, c, [np.array([0]), np.array([3])])
    with pytest.raises(ValueError, match="NaN"):
        M.rank_relevant_grouped(q * np.nan, c, [np.array([0]), np.array([1])])
    with pytest.raises(ValueError, match="embedding sizes"):
        M.rank_relevant_grouped(q, c[:, :2], [np.array([0]), np.array([1])])


def test_pessimistic_order_by_hand():
    scores = np.array([0.5, 0.9, 0.5, 0.1, 0.5], dtype=np.float32)
    # 0.9 first; among the three 0.5s the non-relevant ones (0, 4) in candidate order, then relevant 2
    np.testing.assert_array_equal(pessimistic_order(scores, [2]), [1, 0, 4, 2, 3])
    np.testing.assert_array_equal(pessimistic_order(scores, [0, 2]), [1, 4, 0, 2, 3])
    np.testing.assert_array_equal(pessimistic_order(scores), [1, 0, 2, 4, 3])  # no relevance: candidate order
    q = np.ones((1, 1), dtype=np.float32)
    ranks = M.rank_relevant_grouped(q, scores[:, None], [np.array([0, 2])]).ranks_in_pool()[0]
    np.testing.assert_array_equal(ranks, [3, 4])  # places 3 and 4 of the order above


# --------------------------------------------------------------------------- the reference, on XQuAD-R


@pytest.fixture(scope="module")
def xquad(shared_data):
    return load_retrieval_set("xquad-r", articles=1)


def tied_embeddings(rset, how: str) -> tuple[np.ndarray, np.ndarray]:
    """Random embeddings of ``rset`` on a grid, so every score is exact in float32 and equal
    scores are equal bits: ``coarse`` (steps of 1/2) ties nearly everything; ``duplicated`` (steps
    of 1/1024, where chance ties are rare) copies one relevant candidate of every third query onto
    a random other candidate, as identical sentences do."""
    q, c = random_unit_embeddings(rset, 8, seed=11)
    step = 2 if how == "coarse" else 1024
    q, c = np.round(q * step) / step, np.round(c * step) / step
    if how == "duplicated":
        rng = np.random.default_rng(0)
        for rel in rset.relevant[::3]:
            c[rng.choice(np.setdiff1d(np.arange(len(c)), rel))] = c[rel[0]]
    return q, c


def queries_with_relevant_ties(scores: np.ndarray, relevant: list[np.ndarray]) -> int:
    """How many queries have a relevant candidate whose score a non-relevant candidate shares."""
    return sum(bool(np.isin(s[rel], np.delete(s, rel)).any()) for s, rel in zip(scores, relevant))


@pytest.mark.parametrize("how", ["coarse", "duplicated"])
def test_reference_equals_the_engine_with_ties(xquad, how):
    q, c = tied_embeddings(xquad, how)
    scores = q @ c.T
    n_tied = queries_with_relevant_ties(scores, xquad.relevant)
    assert n_tied >= len(xquad.queries) // 10, n_tied  # ties are common, not incidental
    engine = M.rank_relevant_grouped(q, c, xquad.relevant, chunk_size=64).ranks_in_pool()
    engine_ap, engine_ap20 = M.average_precision(engine), M.ap_at_k_lareqa(engine, 20)
    differs_in_candidate_order = 0
    for i, rel in enumerate(xquad.relevant):
        ranking = reference.ranked_candidates(scores[i], rel)
        ranks = np.flatnonzero(np.isin(ranking, rel)) + 1.0
        np.testing.assert_array_equal(ranks, engine[i][: len(rel)])
        assert reference.average_precision_at_k(rel, ranking) == pytest.approx(engine_ap[i], abs=1e-12)
        assert reference.average_precision_at_k(rel, ranking, k=20) == pytest.approx(engine_ap20[i], abs=1e-12)
        plain = reference.ranked_candidates(scores[i])  # ties in candidate order: not the engine's rule
        differs_in_candidate_order += reference.average_precision_at_k(rel, plain) != pytest.approx(engine_ap[i])
    assert differs_in_candidate_order > 0


# --------------------------------------------------------------------------- ir_measures


@pytest.mark.parametrize("seed, levels", [(5, 2), (6, 6), (7, 40)])
def test_against_ir_measures(seed, levels):
    rng = np.random.default_rng(seed)
    q, c, _, relevant = random_case(rng, n_q=30, n_c=70, max_rel=14, levels=levels)
    scores = q @ c.T
    ranks = brute_force_ranks(scores, relevant)  # an oracle independent of the engine
    np.testing.assert_array_equal(M.rank_relevant_grouped(q, c, relevant).ranks_in_pool(), ranks)
    run, qrels = run_and_qrels(scores, relevant)
    ref = per_query([AP, AP @ 20, RR, nDCG @ 10, R @ 1, R @ 10], qrels, run)
    np.testing.assert_allclose(M.average_precision(ranks), ref[AP], atol=1e-12)
    np.testing.assert_allclose(M.reciprocal_rank(ranks), ref[RR], atol=1e-12)
    np.testing.assert_allclose(M.ndcg_at_k(ranks, 10), ref[nDCG @ 10], atol=1e-12)
    np.testing.assert_allclose(M.recall_at_k(ranks, 1), ref[R @ 1], atol=1e-12)
    np.testing.assert_allclose(M.recall_at_k(ranks, 10), ref[R @ 10], atol=1e-12)
    # trec_eval's AP@20 divides by |R|; LAReQA's by min(20, |R|)
    n_rel = np.array([len(r) for r in relevant])
    np.testing.assert_allclose(M.ap_at_k_lareqa(ranks, 20), ref[AP @ 20] * n_rel / np.minimum(20, n_rel), atol=1e-12)


# --------------------------------------------------------------------------- bootstrap and tests


def test_macro_mean_is_mean_of_group_means():
    v = np.array([1.0, 0.0, 0.0, 0.0, 1.0])
    g = np.array(["a", "a", "a", "a", "b"])
    assert M.macro_mean(v, g) == pytest.approx((0.25 + 1.0) / 2)
    assert M.macro_mean(v) == pytest.approx(0.4)
    # (n, c) with NaN: mean over the non-empty (group, column) cells
    v2 = np.array([[1.0, np.nan], [0.0, 0.5], [np.nan, np.nan]])
    assert M.macro_mean(v2, np.array([0, 0, 1])) == pytest.approx((0.5 + 0.5) / 2)


def test_bootstrap_weights_resample_within_groups_and_are_seeded():
    g = np.repeat([2, 0, 1], [5, 3, 7])

    def weights(seed, batch=1000):
        return np.concatenate(list(M.bootstrap_weight_batches(g, 50, seed, len(g), batch=batch)))

    w = weights(3)
    assert w.shape == (50, len(g))
    for label, size in [(2, 5), (0, 3), (1, 7)]:
        np.testing.assert_array_equal(w[:, g == label].sum(1), size)
    np.testing.assert_array_equal(w, weights(3))
    assert not np.array_equal(w, weights(4))
    np.testing.assert_array_equal(weights(3, batch=7), w)  # batching does not change the stream


@pytest.mark.parametrize("method", ["permutation", "bootstrap"])
def test_paired_test(method):
    rng = np.random.default_rng(0)
    g = np.repeat(["x", "y", "z"], 100)
    a = rng.random(300)
    better = M.paired_test(a + 0.05 + 0.01 * rng.standard_normal(300), a, n=2000, groups=g, method=method)
    assert better.delta == pytest.approx(0.05, abs=0.005) and better.p_value < 0.01
    assert better.ci_low < better.delta < better.ci_high and better.n_queries == 300
    same = M.paired_test(a, a, n=200, groups=g, method=method)
    assert same.delta == 0 and same.p_value == 1.0
    noise = M.paired_test(a + 0.1 * rng.standard_normal(300), a + 0.1 * rng.standard_normal(300),
                          n=2000, groups=g, method=method)
    assert noise.p_value > 0.05 and noise.ci_low < 0 < noise.ci_high


@pytest.mark.parametrize("method", ["permutation", "bootstrap"])
def test_paired_tests_equal_one_test_per_selection(method):
    """Drawing the resamples once for many cell selections changes no test: each equals
    :func:`paired_test` on the values with NaN outside its cells."""
    rng = np.random.default_rng(1)
    g = np.repeat(["x", "y", "z"], [40, 55, 30])
    a, b = rng.random((125, 4)), rng.random((125, 4))
    a[rng.random(a.shape) < 0.1] = np.nan  # missing cells drop out of both
    selections = np.stack([np.ones((3, 4), bool), np.eye(3, 4, dtype=bool), np.zeros((3, 4), bool)])
    selections[2, 1, 3] = True  # one language's queries on one column
    tests = M.paired_tests(a, b, selections, n=300, seed=4, groups=g, method=method)
    codes = np.unique(g, return_inverse=True)[1]
    for sel, test in zip(selections, tests):
        rows = sel[codes]  # (n, C): the cells of each query's group
        one = M.paired_test(np.where(rows, a, np.nan), np.where(rows, b, np.nan), n=300, seed=4, groups=g,
                            method=method)
        assert test.n_queries == one.n_queries
        np.testing.assert_allclose([test.delta, test.ci_low, test.ci_high, test.p_value],
                                   [one.delta, one.ci_low, one.ci_high, one.p_value], rtol=0, atol=1e-12)
    assert tests[0].n_queries == 125 and tests[2].n_queries == int(np.isfinite(a[g == "y", 3]).sum())
