"""Paper-style tables, the README block and `make figures` from a small real evaluation
(smoke-sized XQuAD-R, two seeds of two trained systems and a zero-shot baseline)."""
import numpy as np
import pandas as pd
import pytest

from xlir_utils import outputs, reporting
from xlir_utils.data import load_retrieval_set
from xlir_utils.evaluation import evaluate
from xlir_utils.seed_statistics import run_values, seed_summary

SYSTEMS = (("e5-small-offline", "zero-shot", (None,), 3.0), ("full-X-X", "X-X", (13, 14), 1.5),
           ("full-hybrid", "hybrid", (13, 14), 1.0))


@pytest.fixture(scope="module")
def evaluated(shared_data):
    rset = load_retrieval_set("xquad-r", articles=1)
    rng = np.random.default_rng(0)
    owner = {int(j): rset.queries.question_id.iat[i] for i, rel in enumerate(rset.relevant) for j in rel}
    tables, values = [], []
    for system, training, seeds, noise in SYSTEMS:
        for seed in seeds:
            content = {qid: rng.normal(size=32) for qid in rset.queries.question_id.unique()}
            q = np.stack([content[qid] + noise * rng.normal(size=32) for qid in rset.queries.question_id])
            c = np.stack([(content[owner[j]] if j in owner else rng.normal(size=32)) + noise * rng.normal(size=32)
                          for j in range(len(rset.candidates))])
            q /= np.linalg.norm(q, axis=1, keepdims=True)
            c /= np.linalg.norm(c, axis=1, keepdims=True)
            model = system if seed is None else f"{system}-s{seed}"
            ev = evaluate(rset, q, c, bootstrap=50, model=model, training=training, system=system, run_seed=seed)
            tables.append(ev.table)
            values.append(run_values(ev, model=model, system=system, training=training, seed=seed, dataset=rset.name))
    results = pd.concat(tables, ignore_index=True)
    seed_means, comparisons = seed_summary(values, n_boot=100, comparisons=reporting.headline_comparisons(results))
    return results, seed_means, comparisons


def test_table1_holds_seed_means_in_order(evaluated):
    results, seed_means, _ = evaluated
    t = reporting.table1(seed_means, baselines=("e5-small-offline",))
    assert list(t.columns) == [("xquad-r", "mono"), ("xquad-r", "cross"), ("xquad-r", "multi")]
    assert [i[0] for i in t.index] == ["e5-small-offline", "full-X-X", "full-hybrid"]
    runs = results[(results.system == "full-hybrid") & (results.setting == "multi") & (results.metric == "map")
                   & (results.query_lang == "all")]
    assert len(runs) == 2 and t.loc[("full-hybrid", "hybrid"), ("xquad-r", "multi")] == pytest.approx(runs.value.mean())
    # the less noisy system is better everywhere
    assert (t.loc[("full-hybrid", "hybrid")] > t.loc[("e5-small-offline", "zero-shot")]).all()
    text = reporting.table1_with_intervals(seed_means, "xquad-r")
    assert text.loc[("full-hybrid", "hybrid"), "seeds"] == 2 and " sd " in text.loc[("full-hybrid", "hybrid"), "multi"]


def test_table2_per_language_and_comparisons(evaluated):
    results, seed_means, comparisons = evaluated
    t2 = reporting.table2(seed_means)
    assert (t2["mean"]["xquad-r"] >= 10).all()
    per = reporting.per_language(results, "xquad-r", "multi")
    assert list(per.columns) == list(reporting.LANG_ORDER) and per.notna().all().all()
    assert list(per.index) == ["e5-small-offline", "full-X-X", "full-hybrid"]  # one row per system, not per seed
    assert set(zip(comparisons.a, comparisons.b)) == {("full-hybrid", "full-X-X")}


def test_notebook_04_reads_only_its_own_rows(evaluated, tmp_path, monkeypatch):
    """LIR rows (notebook 05) join the tables in notebook 05 and `make figures`, never in notebook 04."""
    results, seed_means, _ = evaluated
    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))
    outputs.save_table(results, outputs.EVAL_FILE, "smoke")
    outputs.save_table(seed_means, outputs.SEED_MEANS_FILE, "smoke")
    lir = seed_means[seed_means.system == "e5-small-offline"].assign(system="e5-small-offline + LIR r=1",
                                                                      training="LIR r=1 on e5-small-offline")
    outputs.save_table(lir, outputs.LIR_SEED_MEANS_FILE, "smoke")
    assert "e5-small-offline + LIR r=1" not in set(reporting.read_seed_means("smoke", with_lir=False).system)
    joined = reporting.read_seed_means("smoke")
    assert reporting.table1(joined).index.get_level_values(0)[-1] == "e5-small-offline + LIR r=1"  # post-hoc last


def test_readme_block_and_make_figures(evaluated, tmp_path, monkeypatch, shared_data):
    """`make figures` needs only results/: the data (01), training (02, 03) and evaluation (04, 05) tables."""
    from xlir_utils import paths
    from xlir_utils.figures import length_table

    results, seed_means, _ = evaluated
    rset = load_retrieval_set("xquad-r", articles=1)  # read before XLIR_ROOT moves
    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))
    outputs.save_table(results, outputs.EVAL_FILE, "smoke")
    outputs.save_table(seed_means, outputs.SEED_MEANS_FILE, "smoke")
    outputs.save_table(length_table([rset]), outputs.LENGTHS_FILE, "smoke")
    log = pd.DataFrame({"step": range(1, 7), "loss": np.linspace(3, 1, 6), "kind": "mono"})
    outputs.save_table(pd.concat([log.assign(run="full-X-X-s13"), log.assign(run="full-X-Y-s13")]),
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
    block = reporting.results_markdown("smoke").splitlines()
    assert block[0].startswith("| system | training | seeds |") and len(block) == 2 + 3
    assert block[-1].startswith("| full-hybrid | hybrid | 2 |") and "[" in block[-1]


def test_adapter_comparisons_are_found_from_the_training_column():
    frame = pd.DataFrame({
        "system": ["e5", "full-X-X", "full-hybrid", "adapters-task-only", "adapters-joint-per-side",
                   "adapters-joint-per-side-unseen-en", "adapters-joint-per-side-unseen-none", "adapters-shared-control"],
        "training": ["zero-shot", "X-X", "hybrid", "adapters: task-only (hybrid)", "adapters: joint-per-side (hybrid)",
                     "adapters: joint-per-side/unseen-en (hybrid)", "adapters: joint-per-side/unseen-none (hybrid)",
                     "adapters: shared-control (hybrid)"]})
    pairs = reporting.adapter_comparisons(frame)
    adapters = [s for s in frame.system if s.startswith("adapters-")]
    assert [(a, "full-hybrid") for a in adapters] == pairs[:len(adapters)]
    assert pairs[len(adapters):] == [("adapters-joint-per-side-unseen-en", "adapters-joint-per-side"),
                                     ("adapters-joint-per-side-unseen-none", "adapters-joint-per-side")]
    assert reporting.adapter_comparisons(frame[frame.training != "hybrid"])[:1] == [
        ("adapters-joint-per-side-unseen-en", "adapters-joint-per-side")]  # no reference: only the routings
