"""Paper-style tables and `make figures` from a small real evaluation (smoke-sized XQuAD-R)."""
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
        training = "zero-shot" if name == "e5-small-offline" else "hybrid"
        tables.append(evaluate(rset, q, c, bootstrap=50, model=name, training=training).table)
    return pd.concat(tables, ignore_index=True)


def test_table1_layout(results):
    t = reporting.table1(results)
    assert list(t.columns) == [("xquad-r", "mono"), ("xquad-r", "cross"), ("xquad-r", "multi")]
    assert [i[0] for i in t.index] == ["e5-small-offline", "full-hybrid"]
    row = results[(results.model == "full-hybrid") & (results.setting == "multi") & (results.metric == "map")
                  & (results.query_lang == "all")]
    assert t.loc[("full-hybrid", "hybrid"), ("xquad-r", "multi")] == pytest.approx(row.value.iat[0])
    # the less noisy system is better everywhere
    assert (t.loc[("full-hybrid", "hybrid")] > t.loc[("e5-small-offline", "zero-shot")]).all()


def test_table2_and_per_language(results):
    t2 = reporting.table2(results)
    assert (t2["value"]["xquad-r"] >= 10).all()
    per = reporting.per_language(results, "xquad-r", "multi")
    assert list(per.columns) == list(reporting.LANG_ORDER)
    assert per.notna().all().all()


def test_notebook_04_reads_only_its_own_rows(results, tmp_path, monkeypatch):
    """LIR rows (notebook 05) join the tables in notebook 05 and `make figures`, never in notebook 04."""
    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))
    from xlir_utils import outputs

    outputs.save_table(results, outputs.EVAL_FILE, "smoke")
    lir = results[results.model == "e5-small-offline"].assign(model="lir-r1", training="LIR r=1 on e5-small-offline")
    outputs.save_table(lir, outputs.LIR_FILE, "smoke")
    assert "lir-r1" not in set(reporting.read_results("smoke", with_lir=False).model)
    joined = reporting.read_results("smoke")
    assert "lir-r1" in set(joined.model)
    assert reporting.table1(joined).index.get_level_values(0)[-1] == "lir-r1"  # post-hoc rows come last


def test_make_figures_redraws_every_notebook_figure_from_results(results, tmp_path, monkeypatch, shared_data):
    """`make figures` needs only results/: the data (01), training (02, 03) and evaluation (04, 05) tables."""
    rset = load_retrieval_set("xquad-r", articles=1)  # read before XLIR_ROOT moves
    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))
    from xlir_utils import outputs, paths
    from xlir_utils.figures import length_table

    outputs.save_table(results, outputs.EVAL_FILE, "smoke")
    outputs.save_table(length_table([rset]), outputs.LENGTHS_FILE, "smoke")
    log = pd.DataFrame({"step": range(1, 7), "loss": np.linspace(3, 1, 6), "kind": "mono"})
    outputs.save_table(pd.concat([log.assign(run="full-X-X"), log.assign(run="full-X-Y")]),
                       outputs.TRAIN_LOGS_FILE, "smoke")
    outputs.save_table(log.assign(run="adapters-task-only"), outputs.ADAPTER_LOGS_FILE, "smoke")
    outputs.save_table(pd.concat([log.assign(phase="head", lang="mixed"), log.assign(phase="adapter", lang="de")]),
                       outputs.MLM_LOG_FILE, "smoke")
    written = reporting.make_figures("smoke")
    for name in ("01_lengths", "02_loss_curves", "03_mlm_loss", "03_task_loss", "04_headline_xquad-r",
                 "05_language_pair_heatmaps"):
        assert name in written
        assert (paths.figures_dir("smoke") / f"{name}.png").stat().st_size > 5_000
    assert (paths.results_dir("smoke") / "tables" / "table1_map.csv").is_file()
