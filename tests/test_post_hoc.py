"""Erasers as systems (notebook 05 §5): every system + LIR or LEACE is labelled from its spec,
evaluated on the erased embeddings, and compared as the notebook says; on real XQuAD-R texts
with deterministic stand-in encoders."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import CountingEncoder

from xlir_utils import config, erasure, post_hoc
from xlir_utils.data import load_retrieval_set
from xlir_utils.evaluation import evaluate
from xlir_utils.lir import project_out_language_directions
from xlir_utils.systems import System, SystemSpec

E5 = "e5-small-offline"


@pytest.fixture()
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("XLIR_ROOT", str(tmp_path / "proj"))
    monkeypatch.setenv("XLIR_CACHE_DIR", str(tmp_path / "cache"))


def _systems():
    zero_shot = System(E5, SystemSpec("zero-shot", E5), "fp-z", CountingEncoder(offset=3.0))
    hybrid = System("full-hybrid-s13", SystemSpec("full", E5, sampling="hybrid", alpha=0.5), "fp-h",
                    CountingEncoder(offset=1.0), "full-hybrid", 13)
    return [zero_shot, hybrid]


def test_lir_rows_are_labelled_from_the_spec_and_match_the_projection(project, shared_data):
    rset = load_retrieval_set("xquad-r", articles=1)
    cfg = config.load("smoke").replace(bootstrap_samples=20)
    zero_shot, hybrid = _systems()
    table, with_lir, without = post_hoc.post_hoc_systems(cfg, [zero_shot, hybrid], rset)
    assert sorted(table.system.unique()) == ["e5-small-offline + LIR r=1", "e5-small-offline + LIR r=3",
                                            "full-hybrid + LIR r=1"]
    lir_rows = table[table.system == "full-hybrid + LIR r=1"]
    assert set(lir_rows.model) == {"full-hybrid-s13+lir1"} and set(lir_rows.seed) == {13}
    assert set(lir_rows.post_hoc) == {"LIR r=1"} and set(lir_rows.post_hoc_fit) == {post_hoc.LIR_FIT}
    assert set(lir_rows.sampling) == {"hybrid"} and set(lir_rows.alpha) == {0.5}
    assert table[table.system.str.startswith(E5)].post_hoc.isin(["LIR r=1", "LIR r=3"]).all()
    # the values are those of the projected embeddings, and the plain values those of the plain ones
    q = hybrid.encode(rset.queries.text.tolist(), rset.queries.lang.tolist(), "query")
    c = hybrid.encode(rset.candidate_texts(cfg.candidate_text), rset.candidates.lang.tolist(), "passage")
    q2, c2 = project_out_language_directions(q, rset.queries.lang, c, rset.candidates.lang, rank=1)
    expect = evaluate(rset, q2, c2, bootstrap=0).table
    got = lir_rows.set_index(["setting", "query_lang", "cand_lang", "metric"]).value
    want = expect.set_index(["setting", "query_lang", "cand_lang", "metric"]).value
    assert np.allclose(got.loc[want.index].to_numpy(), want.to_numpy(), atol=1e-6)
    assert [v.system for v in without] == ["e5-small-offline", "full-hybrid"]
    assert [v.system for v in with_lir] == ["e5-small-offline + LIR r=1", "e5-small-offline + LIR r=3",
                                           "full-hybrid + LIR r=1"]
    # LIR removes the language offset: the biased hybrid's pooled rank distance drops
    rd = lambda t: t[(t.metric == "rank_distance") & (t.query_lang == "all")].value.iat[0]  # noqa: E731
    assert rd(lir_rows) < rd(evaluate(rset, q, c, bootstrap=0).table)


def test_comparisons_pick_systems_by_their_spec():
    def full(name, sampling, alpha, seed=13):
        return System(f"{name}-s{seed}", SystemSpec("full", E5, sampling=sampling, alpha=alpha), "fp", None, name, seed)

    zero_shot = System(E5, SystemSpec("zero-shot", E5), "fp", None)
    runs = [zero_shot, full("full-X-X", "X-X", 1), full("full-X-Y", "X-Y", 0), full("full-hybrid-a0.25", "hybrid", 0.25),
            full("full-hybrid", "hybrid", 0.5), full("full-hybrid", "hybrid", 0.5, seed=14)]
    pairs = post_hoc.post_hoc_comparisons(runs, E5, alpha=0.5, held_out=False)
    free = "e5-small-offline + LIR r=1"
    trained = ["full-X-X", "full-X-Y", "full-hybrid-a0.25", "full-hybrid"]
    assert pairs == ([(t, free) for t in trained] + [(f"{t} + LIR r=1", free) for t in trained]
                     + [("full-hybrid + LIR r=1", "full-X-X + LIR r=1"), ("full-hybrid + LIR r=1", "full-X-Y + LIR r=1")])


def test_held_out_erasers_are_fitted_on_the_fit_text_and_labelled_with_it(project, shared_data):
    rset = load_retrieval_set("xquad-r", articles=1)
    cfg = config.load("smoke").replace(bootstrap_samples=0)
    _, hybrid = _systems()
    fit = erasure.fit_texts(rset.languages, 20, seed=13)
    table, values, _ = post_hoc.post_hoc_systems(cfg, [hybrid], rset, fit)
    assert [v.system for v in values] == ["full-hybrid + LIR r=1", "full-hybrid + LIR r=1 (NTREX-128)",
                                          "full-hybrid + LEACE (NTREX-128)"]
    leace_rows = table[table.system == "full-hybrid + LEACE (NTREX-128)"]
    assert set(leace_rows.model) == {"full-hybrid-s13+leace-ntrex-128"}
    assert set(leace_rows.post_hoc) == {"LEACE"} and set(leace_rows.post_hoc_fit) == {"NTREX-128"}
    # the values are those of an eraser fitted on the fit text's embeddings (both roles), not the pool's
    q = hybrid.encode(rset.queries.text.tolist(), rset.queries.lang.tolist(), "query")
    c = hybrid.encode(rset.candidate_texts(cfg.candidate_text), rset.candidates.lang.tolist(), "passage")
    held = np.vstack([hybrid.encode(fit.text.tolist(), fit.lang.tolist(), kind) for kind in ("query", "passage")])
    eraser = erasure.fit_leace(held, [*fit.lang, *fit.lang])
    expect = evaluate(rset, erasure.apply_leace(eraser, q), erasure.apply_leace(eraser, c), bootstrap=0).table
    index = ["setting", "query_lang", "cand_lang", "metric"]
    got, want = leace_rows.set_index(index).value, expect.set_index(index).value
    assert np.allclose(got.loc[want.index].to_numpy(), want.to_numpy(), atol=1e-6)


def test_held_out_comparisons_ask_the_three_questions():
    zero_shot = System(E5, SystemSpec("zero-shot", E5), "fp", None)
    hybrid = System("full-hybrid-s13", SystemSpec("full", E5, sampling="hybrid", alpha=0.5), "fp", None, "full-hybrid", 13)
    pairs = post_hoc.post_hoc_comparisons([zero_shot, hybrid], E5, alpha=0.5)
    leace = "e5-small-offline + LEACE (NTREX-128)"
    assert (leace, E5) in pairs  # what LEACE does to the zero-shot encoder
    assert ("full-hybrid", leace) in pairs  # does erasure alone match training?
    assert ("full-hybrid + LEACE (NTREX-128)", "full-hybrid") in pairs  # does it add to training?
    assert ("full-hybrid + LIR r=1", "full-hybrid + LIR r=1 (NTREX-128)") in pairs  # the transductive fit
    assert (f"{E5} + LIR r=1", f"{E5} + LIR r=1 (NTREX-128)") in pairs


def test_several_sets_in_one_call_give_each_sets_own_rows(project, shared_data):
    """Notebook 05 passes XQuAD-R and the dev articles together, so each model loads once."""
    sets = [load_retrieval_set("xquad-r", articles=1), load_retrieval_set("mlqa-r", articles=1)]
    cfg = config.load("smoke").replace(bootstrap_samples=0)
    table, erased, plain = post_hoc.post_hoc_systems(cfg, _systems(), sets)
    apart = [post_hoc.post_hoc_systems(cfg, _systems(), rset) for rset in sets]
    assert set(table.dataset) == {"xquad-r", "mlqa-r"}
    index = ["dataset", "system", "setting", "query_lang", "cand_lang", "metric"]
    together = table.set_index(index).value.sort_index()
    one_by_one = pd.concat([t for t, _, _ in apart]).set_index(index).value.sort_index()
    pd.testing.assert_series_equal(together, one_by_one)
    assert sorted((v.dataset, v.system) for v in erased) == sorted((v.dataset, v.system) for _, e, _ in apart for v in e)
    assert sorted((v.dataset, v.system) for v in plain) == sorted((v.dataset, v.system) for _, _, p in apart for v in p)
