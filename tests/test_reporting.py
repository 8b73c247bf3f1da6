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


def test_make_figures_redraws_every_notebook_figure_from_results(results, tmp_path, monkeypatch, shared_data):
    """`make figures` needs only results/: the data (01), training (02, 03) and evaluation (04, 05) tables."""
    rset = load_retrieval_set("xquad-r", articles=1)  # read before XLIR_ROOT moves
    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))
    from xlir_utils import paths
    from xlir_utils.io_utils import atomic_write_csv, atomic_write_parquet
    from xlir_utils.plotting import length_table

    folder = paths.ensure(paths.results_dir("smoke"))
    atomic_write_csv(results, folder / reporting.EVAL_FILE)
    atomic_write_parquet(length_table([rset]), folder / reporting.LENGTHS_FILE)
    log = pd.DataFrame({"step": range(1, 7), "loss": np.linspace(3, 1, 6), "kind": "mono"})
    atomic_write_csv(pd.concat([log.assign(run="full-X-X"), log.assign(run="full-X-Y")]),
                     folder / reporting.TRAIN_LOGS_FILE)
    atomic_write_csv(pd.concat([log.assign(run="adapters-task-only")]), folder / reporting.ADAPTER_LOGS_FILE)
    atomic_write_csv(pd.concat([log.assign(phase="head", lang="mixed"), log.assign(phase="adapter", lang="de")]),
                     folder / reporting.MLM_LOG_FILE)
    written = reporting.make_figures("smoke")
    for name in ("01_lengths", "02_loss_curves", "03_mlm_loss", "03_task_loss", "04_headline_xquad-r"):
        assert name in written
        assert (paths.figures_dir("smoke") / f"{name}.png").stat().st_size > 5_000
