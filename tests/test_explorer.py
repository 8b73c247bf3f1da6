"""The retrieval explorer (notebook 06) on real XQuAD-R: its ranks agree with the evaluation
engine's (ties included), relevance marks and the language filter are right, typed questions are
encoded on the fly (LIR included, as :mod:`xlir_utils.lir` projects the set), and the widget runs
when its controls are set and its button clicked."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import random_unit_embeddings

from xlir_utils import evaluation as E
from xlir_utils.explorer import Explorer, ExplorerSystem, _with_lir, guess_language
from xlir_utils.explorer_view import ExplorerWidget, compare
from xlir_utils.lir import project_out_language_directions
from xlir_utils.systems import SystemSpec


@pytest.fixture(scope="module")
def rset(shared_data):
    from xlir_utils.data import load_retrieval_set

    return load_retrieval_set("xquad-r", articles=1)


def _lookup_system(label, rset, seed):
    """A content-free system whose typed-question encoder returns the stored vector of the
    set's question with that text (so on-the-fly and stored paths can be compared)."""
    q, c = random_unit_embeddings(rset, 32, seed=seed)
    index = {(t, lang): i for i, (t, lang) in enumerate(zip(rset.queries.text, rset.queries.lang))}
    calls = []

    def encode_query(text, lang):
        calls.append((text, lang))
        return q[index[(text, lang)]] if (text, lang) in index else q[0]

    system = ExplorerSystem(label, SystemSpec("zero-shot", label), q, c, encode_query)
    return system, calls


@pytest.fixture(scope="module")
def explorer(rset):
    a, _ = _lookup_system("A", rset, 1)
    b, _ = _lookup_system("B", rset, 2)
    return Explorer(rset, [a, b])


def test_ranks_agree_with_the_evaluation_engine(explorer, rset):
    sys_a = explorer.systems["A"]
    ev = E.evaluate(rset, sys_a.queries, sys_a.candidates, bootstrap=0)
    lang_code = {lang: i for i, lang in enumerate(rset.languages)}
    for i in (0, 7, len(rset.queries) - 1):
        ranks = explorer.parallel_answer_ranks(i, ["A"])
        positions = ev.ranks.positions[i]
        engine = dict(zip(positions[positions >= 0], ev.ranks.pool_rank[i][positions >= 0]))
        assert len(ranks) == len(rset.relevant[i]) == len(rset.languages)
        assert [int(x) for x in ranks["A"]] == [int(engine[p]) for p in rset.relevant[i]]
        # restricted to one language, a rank is the engine's rank within that language
        lang = rset.queries.lang.iat[i]
        within = explorer.parallel_answer_ranks(i, ["A"], languages=[lang])
        own = within[within.lang == lang]["A"].iat[0]
        j = [p for p in rset.relevant[i] if rset.candidates.lang.iat[p] == lang][0]
        slot = int(np.flatnonzero(positions == j)[0])
        assert ev.ranks.group[i][slot] == lang_code[lang] and own == int(ev.ranks.group_rank[i][slot])
        assert within[within.lang != lang]["A"].isna().all()  # outside the filter


def tied_unit_embeddings(rset, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors with four entries of +-1/2 in 8 dimensions: every score is a multiple of 1/4,
    exact in float32, so equal scores (which abound) are equal bits in every computation."""
    rng = np.random.default_rng(seed)

    def draw(n):
        x = np.zeros((n, 8), dtype=np.float32)
        dims = np.argsort(rng.random((n, 8)), axis=1)[:, :4]
        np.put_along_axis(x, dims, rng.choice([-0.5, 0.5], size=(n, 4)).astype(np.float32), axis=1)
        return x

    return draw(len(rset.queries)), draw(len(rset.candidates))


def test_ranks_agree_with_the_evaluation_engine_under_ties(rset):
    q, c = tied_unit_embeddings(rset, seed=5)
    ex = Explorer(rset, [ExplorerSystem("T", SystemSpec("zero-shot", "T"), q, c, lambda text, lang: q[0])])
    ev = E.evaluate(rset, q, c, bootstrap=0)
    lang_code = {lang: i for i, lang in enumerate(rset.languages)}
    scores = q @ c.T
    tied = shared_better = 0
    for i in range(0, len(rset.queries), 4):
        rel = rset.relevant[i]
        others = np.delete(scores[i], rel)
        tied += bool(np.isin(scores[i, rel], others).any())
        positions = ev.ranks.positions[i]
        engine = dict(zip(positions[positions >= 0], ev.ranks.pool_rank[i][positions >= 0]))
        got = [int(x) for x in ex.parallel_answer_ranks(i, ["T"])["T"]]
        assert got == [int(engine[p]) for p in rel]
        shared_better += sum(1 + int((scores[i] > scores[i, p]).sum()) < r for p, r in zip(rel, got))
        # the top-k table ranks each relevant answer where parallel_answer_ranks puts it
        table = ex.explore(i, ["T"], k=len(c))
        marked = table[table.relevant]
        assert dict(zip(marked.candidate_id, marked["rank"])) == {
            rset.candidates.candidate_id.iat[p]: r for p, r in zip(rel, got)}
        # within the question's own language, the engine's group rank
        lang = rset.queries.lang.iat[i]
        own = ex.parallel_answer_ranks(i, ["T"], languages=[lang])
        j = [p for p in rel if rset.candidates.lang.iat[p] == lang][0]
        slot = int(np.flatnonzero(positions == j)[0])
        assert ev.ranks.group[i][slot] == lang_code[lang]
        assert own[own.lang == lang]["T"].iat[0] == int(ev.ranks.group_rank[i][slot])
    assert tied >= len(range(0, len(rset.queries), 4)) // 2  # most checked queries have a tied answer
    assert shared_better > 0  # ties sharing the better rank would have given other ranks


def test_explore_top_k_marks_and_filter(explorer, rset):
    i = 3
    out = explorer.explore(i, ["A", "B"], k=25)
    assert list(out.columns[:6]) == ["system", "rank", "lang", "text", "score", "relevant"]
    for label, sub in out.groupby("system"):
        assert sub["rank"].tolist() == list(range(1, 26))
        assert np.all(np.diff(sub.score.to_numpy()) <= 0)
        s = explorer.systems[label]
        full = s.candidates @ s.queries[i]
        np.testing.assert_allclose(sub.score.to_numpy(), np.sort(full)[::-1][:25], rtol=1e-6)
    rel_ids = set(rset.candidates.candidate_id.iloc[rset.relevant[i]])
    assert out.relevant.tolist() == [cid in rel_ids for cid in out.candidate_id]
    only = explorer.explore(i, ["A"], k=40, languages=["th", "zh"])
    assert set(only.lang) <= {"th", "zh"} and len(only) == 40
    mix = explorer.language_mix(only)
    assert set(mix.lang) == {"th", "zh"}
    assert mix.top_k_share.sum() == pytest.approx(1.0) and mix.pool_share.sum() == pytest.approx(1.0)
    counts = rset.candidates.lang.value_counts()
    th_share = counts["th"] / (counts["th"] + counts["zh"])
    assert mix.set_index("lang").pool_share["th"] == pytest.approx(th_share)


def test_questions_resolve_by_position_id_and_text(rset):
    a, calls = _lookup_system("A", rset, 1)
    ex = Explorer(rset, [a])
    g = int(np.flatnonzero((rset.queries.lang == "el").to_numpy())[0])
    by_pos, by_id = ex.question(g), ex.question(rset.queries.query_id.iat[g])
    by_text = ex.question("  " + rset.queries.text.iat[g] + " ")  # the script says Greek
    assert by_pos == by_id == by_text and by_pos.index == g and by_pos.lang == "el"
    typed = ex.question("Who wrote the theory of relativity?")
    assert typed.index is None and typed.lang == "en" and typed.query_id is None
    out = ex.explore("Who wrote the theory of relativity?", ["A"], k=5)
    assert out.relevant.isna().all() and calls == [("Who wrote the theory of relativity?", "en")]
    assert ex.parallel_answer_ranks("Who wrote the theory of relativity?", ["A"]).empty
    assert ex.question("Wer schrieb das?", query_lang="de").lang == "de"


def test_guess_language_on_real_questions(rset):
    q = rset.queries
    for lang in ("ar", "hi", "el", "ru", "th", "zh"):
        texts = q.text[q.lang == lang]
        hits = np.mean([guess_language(t) == lang for t in texts])
        assert hits >= 0.99, (lang, hits)
    assert all(guess_language(t) == "en" for t in q.text[q.lang.isin(["en", "de", "es", "tr", "vi"])])
    assert guess_language("1234 ?!") == "en" and guess_language("", default="de") == "de"


def test_lir_on_a_typed_question_matches_the_stored_projection(rset):
    a, _ = _lookup_system("A", rset, 1)
    lir = _with_lir(a, rset, rank=1)
    assert lir.label == "A + LIR r=1"
    for i in (0, 50, 120):
        v = lir.encode_query(rset.queries.text.iat[i], rset.queries.lang.iat[i])
        np.testing.assert_allclose(v, lir.queries[i], atol=1e-6)
        assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
    # LIR removes each language's top direction: its stored vectors no longer load on it
    assert not np.allclose(lir.candidates, a.candidates)


@pytest.mark.parametrize("rank", [1, 3])
def test_lir_of_the_set_is_the_projection_of_notebook_05(rset, rank):
    a, _ = _lookup_system("A", rset, 1)
    lir = _with_lir(a, rset, rank=rank)
    q, c = project_out_language_directions(a.queries, rset.queries.lang, a.candidates, rset.candidates.lang,
                                           rank=rank)
    np.testing.assert_array_equal(lir.queries, q)
    np.testing.assert_array_equal(lir.candidates, c)
    assert lir.label == f"A + LIR r={rank}"


def test_clear_errors(explorer, rset):
    with pytest.raises(KeyError, match="choose from"):
        explorer.explore(0, ["nope"])
    with pytest.raises(ValueError, match="no candidates in"):
        explorer.explore(0, ["A"], languages=["xx"])
    with pytest.raises(ValueError, match="type a question"):
        explorer.explore("   ", ["A"])
    with pytest.raises(ValueError, match="k must be"):
        explorer.explore(0, ["A"], k=0)
    with pytest.raises(IndexError, match="outside"):
        explorer.question(10**6)
    a, _ = _lookup_system("A", rset, 1)
    short = ExplorerSystem("S", a.spec, a.queries[:5], a.candidates, a.encode_query)
    with pytest.raises(ValueError, match="rerun notebook 04"):
        Explorer(rset, [short])
    with pytest.raises(ValueError, match="notebook 04"):
        Explorer(rset, [])


def test_comparison_renders_html_and_text(explorer, rset):
    c = compare(explorer, 5, ["A", "B"], k=8)
    page, text = c._repr_html_(), repr(c)
    assert rset.queries.text.iat[5][:30] in text
    for label in ("A", "B"):
        assert f"<h4 style=\"margin:4px 0\">{label}</h4>" in page and f"== {label}" in text
    assert "Where the parallel answers land" in page and "parallel answers, rank per system" in text
    n_marked = int(c.results.relevant.sum())
    assert page.count("✓") == n_marked


def test_widget_runs_when_clicked(explorer, rset):
    pytest.importorskip("ipywidgets")
    w = ExplorerWidget(explorer, examples=10)
    pick = w.picker.options[3][1]
    w.picker.value = pick
    w.system_a.value, w.system_b.value = "B", "A"
    w.k.value = 6
    w.languages.value = ("en", "de")
    w.run_button.click()
    c = w.last
    assert c.question.index == pick and c.systems == ["B", "A"]
    assert len(c.results) == 12 and set(c.results.lang) <= {"en", "de"}
    assert rset.queries.text.iat[pick][:20].replace("'", "&#x27;") in w.output.value
    # a typed question, then an empty one: the error is shown, nothing raised
    w.picker.value = -1
    w.question.value = "Was ist die Hauptstadt?"
    w.query_lang.value = "de"
    w.run_button.click()
    assert w.last.question.lang == "de" and w.last.question.index is None
    w.question.value = ""
    w.run_button.click()
    assert isinstance(w.last, str) and "type a question" in w.output.value


@pytest.mark.slow
def test_load_explorer_with_the_real_encoder(shared_data):
    from xlir_utils import config
    from xlir_utils.explorer import load_explorer

    cfg = config.load("smoke")
    ex = load_explorer(cfg, families=("zero-shot",))
    assert ex.labels == [cfg.encoder, f"{cfg.encoder} + LIR r=1"]
    assert ex.label_of(family="zero-shot", post_hoc=None) == cfg.encoder  # picked by the spec, not the name
    assert ex.label_of(post_hoc="LIR r=1") == f"{cfg.encoder} + LIR r=1" and ex.label_of(sampling="hybrid") is None
    with pytest.raises(ValueError, match="no system column"):
        ex.label_of(training="hybrid")
    q = ex.rset.queries
    for label in ex.labels:
        s = ex.systems[label]
        for i in (0, int(np.flatnonzero((q.lang == "th").to_numpy())[0])):
            typed = s.encode_query(q.text.iat[i], q.lang.iat[i])  # on the fly, as a typed question
            assert float(typed @ s.queries[i]) > 0.999
    # a real model puts a relevant answer in the pooled top 10 for most questions
    found = [bool(ex.explore(i, [cfg.encoder], k=10).relevant.any()) for i in range(0, len(q), 7)]
    assert np.mean(found) >= 0.5
