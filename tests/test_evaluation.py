"""Evaluation: the three settings on hand-checked synthetic sets, MLQA-style missing
languages, paired comparisons, atomic result writing, and the real XQuAD-R structure."""
from __future__ import annotations

import ir_measures
import numpy as np
import pandas as pd
import pytest
from conftest import random_unit_embeddings
from ir_measures import AP, R, nDCG

from xlir_utils import evaluation as E
from xlir_utils import metrics as M
from xlir_utils.data import RetrievalSet


def make_set(questions: dict[str, list[str]], languages: tuple[str, ...], extra_per_lang: int = 1) -> RetrievalSet:
    """One answer sentence per (question, language) plus ``extra_per_lang`` distractors per language.

    ``questions``: question id -> languages it exists in. Candidates are grouped by language.
    """
    cands, answer = [], {}
    for lang in languages:
        for qid, langs in questions.items():
            if lang in langs:
                answer[(qid, lang)] = len(cands)
                cands.append({"candidate_id": f"{lang}:{qid}", "lang": lang, "sentence": f"{qid} {lang}"})
        for k in range(extra_per_lang):
            cands.append({"candidate_id": f"{lang}:x{k}", "lang": lang, "sentence": f"x{k} {lang}"})
    queries = [{"query_id": f"{lang}:{qid}", "question_id": qid, "lang": lang, "text": f"{qid}?"}
               for lang in languages for qid, langs in questions.items() if lang in langs]
    qdf = pd.DataFrame(queries)
    cdf = pd.DataFrame(cands).assign(context="", article=0, title="", paragraph=0, sentence_index=0)
    relevant = [np.array(sorted(answer[(q, lang)] for lang in questions[q]), dtype=np.int64) for q in qdf.question_id]
    return RetrievalSet("toy", languages, qdf, cdf, relevant)


def value(table: pd.DataFrame, setting: str, metric: str, query_lang: str = "all", cand_lang: str | None = None):
    t = table[(table.setting == setting) & (table.metric == metric) & (table.query_lang == query_lang)]
    if cand_lang is not None:
        t = t[t.cand_lang == cand_lang]
    assert len(t) == 1, t
    return t.iloc[0]


@pytest.fixture(scope="module")
def toy():
    """2 languages x 2 questions; candidates de:q1 de:q2 de:x en:q1 en:q2 en:x (positions 0-5).

    Candidate embeddings are the identity, so each query embedding *is* its score row.
    """
    rset = make_set({"q1": ["de", "en"], "q2": ["de", "en"]}, ("de", "en"))
    assert rset.candidates.candidate_id.tolist() == ["de:q1", "de:q2", "de:x0", "en:q1", "en:q2", "en:x0"]
    scores = np.array([
        [0.9, 0.1, 0.5, 0.3, 0.2, 0.8],    # de:q1
        [0.7, 0.6, 0.1, 0.2, 0.3, 0.4],    # de:q2
        [0.2, 0.1, 0.3, 0.9, 0.8, 0.7],    # en:q1
        [0.1, 0.35, 0.3, 0.4, 0.5, 0.6],   # en:q2
    ], dtype=np.float32)
    ev = E.evaluate(rset, scores, np.eye(6, dtype=np.float32), same_lang_k=2, bootstrap=200, seed=1)
    return rset, scores, ev


def test_toy_by_hand(toy):
    _, _, ev = toy
    t = ev.table
    # mono: de:q1 answer ranked 1st of the de pool (AP 1), de:q2 2nd (0.6 < 0.7: AP 1/2);
    # en:q1 1st (1), en:q2 2nd (0.5 < 0.6: 1/2). Per language (1 + 1/2) / 2 = 0.75; macro 0.75.
    assert value(t, "mono", "map").value == pytest.approx(0.75)
    assert value(t, "mono", "map", "de", "de").value == pytest.approx(0.75)
    assert value(t, "mono", "r@1").value == pytest.approx(0.5)
    # cross de→en: de:q1's en:q1 (0.3) is below en:x0 (0.8): AP 1/2; de:q2's en:q2 (0.3) below
    # en:x0 (0.4): 1/2 → cell 0.5. en→de: en:q1's de:q1 (0.2) below de:x0 (0.3): 1/2; en:q2's
    # de:q2 (0.35) first: 1 → cell 0.75. Macro over the 2 pairs: 0.625.
    assert value(t, "pair", "map", "de", "en").value == pytest.approx(0.5)
    assert value(t, "pair", "map", "en", "de").value == pytest.approx(0.75)
    assert value(t, "cross", "map").value == pytest.approx(0.625)
    assert value(t, "cross", "map", "en").value == pytest.approx(0.75)
    # multi, pool of 6: de:q1 relevant at ranks 1 and 4 → AP (1/1 + 2/4)/2 = 0.75, RD 3
    # de:q2 ranks 2, 4 → (1/2 + 2/4)/2 = 0.5, RD 2;  en:q1 ranks 1, 5 → (1 + 2/5)/2 = 0.7, RD 4
    # en:q2 ranks 2, 4 → 0.5, RD 2.  de: 0.625, en: 0.6 → macro 0.6125; RD de 2.5, en 3 → 2.75
    assert value(t, "multi", "map", "de").value == pytest.approx(0.625)
    assert value(t, "multi", "map").value == pytest.approx(0.6125)
    assert value(t, "multi", "rank_distance").value == pytest.approx(2.75)
    # R@1 in the pool: |rel in top 1| / |R| = 1/2, 0, 1/2, 0 → 0.25
    assert value(t, "multi", "r@1").value == pytest.approx(0.25)
    # top-2 own-language share: de:q1 {de:q1, en:x0} 1/2; de:q2 {de:q1, de:q2} 1; en:q1 1; en:q2 1
    assert value(t, "multi", "same_lang_top2").value == pytest.approx((0.75 + 1.0) / 2)
    assert value(t, "multi", "same_lang_pool_share").value == pytest.approx(0.5)
    # map@20 with |R| = 1 or 2 <= 20 equals full AP here
    assert value(t, "multi", "map@20_lareqa").value == pytest.approx(0.6125)


def test_toy_table_shape(toy):
    _, _, ev = toy
    t = ev.table
    assert list(t.columns) == E.TABLE_COLUMNS
    assert set(t.setting) == {"mono", "cross", "multi", "pair"}
    assert (t.dataset == "toy").all() and "model" not in t.columns  # the caller labels the rows
    assert not t[["value", "ci_low", "ci_high"]].isna().any().any()
    assert (t.ci_low <= t.value + 1e-12).all() and (t.value <= t.ci_high + 1e-12).all()
    assert set(t[t.setting == "pair"].metric) == {"map", "map@20_lareqa", "r@1", "r@10", "mrr", "ndcg@10"}
    assert "rank_distance" not in set(t[t.setting != "multi"].metric)
    assert value(t, "multi", "map").n_queries == 4 and value(t, "cross", "map", "de").n_queries == 2
    assert len(t[(t.setting == "pair") & (t.metric == "map")]) == 4  # 2 x 2 incl. the diagonal
    assert value(t, "multi", "map", cand_lang="pool").value == pytest.approx(0.6125)


def test_per_query_and_multilingual_ranks(toy):
    rset, scores, ev = toy
    pq = ev.per_query
    assert len(pq) == 4 * 3  # each query: own language, the other language, the pool
    row = pq[(pq.query_id == "en:q1") & (pq.cand_lang == "pool")].iloc[0]
    assert row.setting == "multi" and row.n_rel == 2 and row["map"] == pytest.approx(0.7)
    en_q1 = rset.queries.query_id.tolist().index("en:q1")
    assert ev.ranks.ranks_in_pool()[en_q1].tolist() == [1, 5]


def test_settings_subset(toy):
    rset, scores, _ = toy
    ev = E.evaluate(rset, scores, np.eye(6, dtype=np.float32), settings=("multi",), bootstrap=0)
    assert set(ev.table.setting) == {"multi"}
    assert value(ev.table, "multi", "map").value == pytest.approx(0.6125)
    assert ev.table.ci_low.isna().all()
    ev = E.evaluate(rset, scores, np.eye(6, dtype=np.float32), settings=("cross",), bootstrap=0)
    assert set(ev.table.setting) == {"cross", "pair"}
    assert value(ev.table, "cross", "map").value == pytest.approx(0.625)
    with pytest.raises(ValueError, match="settings"):
        E.evaluate(rset, scores, np.eye(6, dtype=np.float32), settings=("pooled",))


def test_mlqa_style_missing_languages_are_dropped():
    questions = {"q1": ["de", "en", "es"], "q2": ["en"], "q3": ["en", "es"], "q4": ["de", "en"]}
    rset = make_set(questions, ("de", "en", "es"), extra_per_lang=5)
    rng = np.random.default_rng(0)
    q = rng.standard_normal((len(rset.queries), 8)).astype(np.float32)
    c = rng.standard_normal((len(rset.candidates), 8)).astype(np.float32)
    ev = E.evaluate(rset, q, c, bootstrap=0)
    pq = ev.per_query
    # en:q2 exists only in English: no cross rows; its pool has one relevant
    assert set(pq[pq.query_id == "en:q2"].cand_lang) == {"en", "pool"}
    # cross en→de: only q1 and q4 have a German answer
    assert value(ev.table, "pair", "map", "en", "de").n_queries == 2
    assert value(ev.table, "cross", "map", "en").n_queries == 3  # q1, q3, q4 (q2 has no cross pool)
    # independent check of the cross macro: per (X, Y) cell, ranking only Y's candidates
    langs = rset.candidates.lang.to_numpy()
    cells = []
    for x in rset.languages:
        rows = np.flatnonzero(rset.queries.lang.to_numpy() == x)
        for y in rset.languages:
            if y == x:
                continue
            rel = [rset.relevant[i][langs[rset.relevant[i]] == y] for i in rows]
            keep = [i for i, r in enumerate(rel) if len(r)]
            if keep:
                pool = np.flatnonzero(langs == y)
                new_pos = {int(j): k for k, j in enumerate(pool)}
                sub_rel = [np.array([new_pos[int(j)] for j in rel[i]]) for i in keep]
                ranks = M.rank_relevant_grouped(q[rows[keep]], c[pool], sub_rel).ranks_in_pool()
                cells.append(M.average_precision(ranks).mean())
    assert value(ev.table, "cross", "map").value == pytest.approx(np.mean(cells))
    assert len(cells) == len(ev.table[(ev.table.setting == "pair") & (ev.table.metric == "map")]) - 3


def test_paired_comparison(toy):
    rset, scores, ev = toy
    same = E.paired_comparison(ev.per_query, ev.per_query, metrics=("map", "r@1"), n=200)
    assert (same.delta == 0).all() and (same.p_value == 1).all()
    assert set(same.setting) == {"mono", "cross", "multi"}
    better = scores.copy()
    better[[0, 1, 2, 3], [3, 4, 0, 1]] = 1.0  # every cross-language answer to the top
    ev_b = E.evaluate(rset, better, np.eye(6, dtype=np.float32), bootstrap=0)
    cmp = E.paired_comparison(ev_b.per_query, ev.per_query, n=200)
    row = cmp[(cmp.setting == "cross") & (cmp.query_lang == "all")].iloc[0]
    assert row.delta == pytest.approx(1.0 - 0.625) and row.value_a == pytest.approx(1.0)
    other = make_set({"q1": ["de", "en"]}, ("de", "en"))
    ev_o = E.evaluate(other, np.eye(4, dtype=np.float32)[:2], np.eye(4, dtype=np.float32), bootstrap=0)
    with pytest.raises(ValueError, match="different"):
        E.paired_comparison(ev.per_query, ev_o.per_query)


def test_real_xquad_r_structure_and_ir_measures(shared_data):
    from xlir_utils.data import load_retrieval_set

    rset = load_retrieval_set("xquad-r", articles=1)
    q, c = random_unit_embeddings(rset, 32, seed=0)
    ev = E.evaluate(rset, q, c, bootstrap=0)
    t = ev.table
    n_lang = len(rset.languages)
    assert n_lang == 11
    assert len(t[(t.setting == "pair") & (t.metric == "map")]) == n_lang * n_lang
    assert len(t[(t.setting == "cross") & (t.metric == "map")]) == n_lang + 1
    assert value(t, "multi", "map").n_queries == len(rset.queries)
    assert value(t, "multi", "rank_distance").value >= 10  # floor |R| - 1
    assert (ev.per_query[ev.per_query.setting == "multi"]["r@10"] <= 10 / 11 + 1e-12).all()
    # the multilingual numbers against ir_measures on the full run (all candidates scored)
    scores = q @ c.T
    cid = rset.candidates.candidate_id.to_numpy()
    run = {qid: dict(zip(cid, map(float, row))) for qid, row in zip(rset.queries.query_id, scores)}
    qrels = {qid: {cid[j]: 1 for j in rel} for qid, rel in zip(rset.queries.query_id, rset.relevant)}
    ref = {m: {} for m in (AP, nDCG @ 10, R @ 10)}
    for r in ir_measures.iter_calc(list(ref), qrels, run):
        ref[r.measure][r.query_id] = r.value
    multi = ev.per_query[ev.per_query.setting == "multi"].set_index("query_id")
    for ours, m in [("map", AP), ("ndcg@10", nDCG @ 10), ("r@10", R @ 10)]:
        np.testing.assert_allclose(multi[ours].to_numpy(), [ref[m][i] for i in multi.index], atol=1e-9)
