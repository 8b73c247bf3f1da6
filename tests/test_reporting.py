"""Paper-style tables and figures from a small real evaluation (smoke-sized XQuAD-R)."""
import numpy as np
import pandas as pd
import pytest

from xlir_utils import reporting
from xlir_utils.data import load_retrieval_set
from xlir_utils.evaluation import evaluate


@pytest.fixture(scope="module")
def results(shared_data):
    rset = load_retrieval_set("xquad-r", articles=1)
    rng = np.random.default_rng(0)
    tables = []
    for name, noise in (("e5-small-offline", 3.0), ("full-hybrid", 1.0)):
        # embeddings where parallel answers share a content vector, plus noise
        content = {qid: rng.normal(size=32) for qid in rset.queries.question_id.unique()}
        q = np.stack([content[qid] + noise * rng.normal(size=32) for qid in rset.queries.question_id])
        cand_qid = {}
        for i, rel in enumerate(rset.relevant):
            for j in rel:
                cand_qid[j] = rset.queries.question_id.iat[i]
        c = np.stack([content.get(cand_qid.get(j), rng.normal(size=32)) + noise * rng.normal(size=32)
                      for j in range(len(rset.candidates))])
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        tables.append(evaluate(rset, q, c, bootstrap=50, model=name, training=name).table)
    return pd.concat(tables, ignore_index=True)


def test_table1_layout(results):
    t = reporting.table1(results)
    assert list(t.columns) == [("xquad-r", "mono"), ("xquad-r", "cross"), ("xquad-r", "multi")]
    assert [i[0] for i in t.index] == ["e5-small-offline", "full-hybrid"]
    row = results[(results.model == "full-hybrid") & (results.setting == "multi") & (results.metric == "map")
                  & (results.query_lang == "all")]
    assert t.loc[("full-hybrid", "full-hybrid"), ("xquad-r", "multi")] == pytest.approx(row.value.iat[0])
    # the less noisy system is better everywhere
    assert (t.loc[("full-hybrid", "full-hybrid")] > t.loc[("e5-small-offline", "e5-small-offline")]).all()


def test_table2_and_per_language(results):
    t2 = reporting.table2(results)
    assert (t2["value"]["xquad-r"] >= 10).all()
    per = reporting.per_language(results, "xquad-r", "multi")
    assert list(per.columns) == list(reporting.LANG_ORDER)
    assert per.notna().all().all()


def test_paper_numbers_are_the_published_ones():
    paper = reporting.paper_table()
    assert paper.loc[("XLM-R", "hybrid"), "xquad-r multi"] == 0.593
    assert paper.loc[("LaBSE", "X-X"), "xquad-r rank_distance"] == 262


def test_figures_are_written(results, tmp_path, monkeypatch):
    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))
    from xlir_utils import paths
    from xlir_utils.plotting import save_figure

    fig = reporting.plot_headline(results)
    png, pdf = save_figure(fig, "t", "smoke")
    assert png.stat().st_size > 10_000 and pdf.read_bytes().startswith(b"%PDF")
    again = save_figure(reporting.plot_headline(results), "t", "smoke")
    assert again[1].read_bytes() == pdf.read_bytes()  # reproducible: no timestamps
    assert png.parent == paths.figures_dir("smoke")
