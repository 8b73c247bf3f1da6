"""Paper-style tables, the README block and `make figures` from a small real evaluation
(smoke-sized XQuAD-R, two seeds of two trained systems and a zero-shot baseline)."""
import numpy as np
import pandas as pd
import pytest

from xlir_utils import outputs, reporting
from xlir_utils.errors import DamagedFileError
from xlir_utils.data import load_retrieval_set
from xlir_utils.evaluation import evaluate
from xlir_utils.languages import LANG_ORDER
from xlir_utils.seed_statistics import run_values, seed_summary
from xlir_utils.systems import SystemSpec, label_rows

E5 = "e5-small-offline"
SYSTEMS = ((E5, SystemSpec("zero-shot", E5), (None,), 3.0),
           ("full-X-X", SystemSpec("full", E5, sampling="X-X", alpha=1), (13, 14), 1.5),
           ("full-hybrid", SystemSpec("full", E5, sampling="hybrid", alpha=0.5), (13, 14), 1.0))
HYBRID = ("full-hybrid", "hybrid α=0.5")


@pytest.fixture(scope="module")
def evaluated(shared_data):
    rset = load_retrieval_set("xquad-r", articles=1)
    rng = np.random.default_rng(0)
    owner = {int(j): rset.queries.question_id.iat[i] for i, rel in enumerate(rset.relevant) for j in rel}
    tables, values = [], []
    for system, spec, seeds, noise in SYSTEMS:
        for seed in seeds:
            content = {qid: rng.normal(size=32) for qid in rset.queries.question_id.unique()}
            q = np.stack([content[qid] + noise * rng.normal(size=32) for qid in rset.queries.question_id])
            c = np.stack([(content[owner[j]] if j in owner else rng.normal(size=32)) + noise * rng.normal(size=32)
                          for j in range(len(rset.candidates))])
            q /= np.linalg.norm(q, axis=1, keepdims=True)
            c /= np.linalg.norm(c, axis=1, keepdims=True)
            model = system if seed is None else f"{system}-s{seed}"
            labels = {"model": model, "system": system, "seed": seed, **spec.columns()}
            ev = evaluate(rset, q, c, bootstrap=50)
            tables.append(label_rows(ev.table, labels, "sentence"))
            values.append(run_values(ev, labels=labels, dataset=rset.name))
    results = pd.concat(tables, ignore_index=True)
    seed_means, comparisons = seed_summary(values, n_boot=100,
                                           comparisons=reporting.headline_comparisons(results, 0.5))
    return results, seed_means, comparisons


def test_table1_holds_seed_means_in_order(evaluated):
    results, seed_means, _ = evaluated
    t = reporting.table1(seed_means, baselines=("e5-small-offline",))
    assert list(t.columns) == [("xquad-r", "mono"), ("xquad-r", "cross"), ("xquad-r", "multi")]
    assert [i[0] for i in t.index] == ["e5-small-offline", "full-X-X", "full-hybrid"]
    runs = results[(results.system == "full-hybrid") & (results.setting == "multi") & (results.metric == "map")
                   & (results.query_lang == "all")]
    assert len(runs) == 2 and t.loc[HYBRID, ("xquad-r", "multi")] == pytest.approx(runs.value.mean())
    # the less noisy system is better everywhere
    assert (t.loc[HYBRID] > t.loc[(E5, "zero-shot")]).all()
    text = reporting.table1_with_intervals(seed_means, "xquad-r")
    assert text.loc[HYBRID, "seeds"] == 2 and " sd " in text.loc[HYBRID, "multi"]


def test_table2_per_language_and_comparisons(evaluated):
    results, seed_means, comparisons = evaluated
    t2 = reporting.table2(seed_means)
    assert (t2["mean"]["xquad-r"] >= 10).all()
    per = reporting.per_language(results, "xquad-r", "multi")
    assert list(per.columns) == list(LANG_ORDER) and per.notna().all().all()
    assert list(per.index) == ["e5-small-offline", "full-X-X", "full-hybrid"]  # one row per system, not per seed
    assert set(zip(comparisons.a, comparisons.b)) == {("full-hybrid", "full-X-X")}


def test_notebook_04_reads_only_its_own_rows(evaluated, tmp_path, monkeypatch):
    """LIR rows (notebook 05) join the tables in notebook 05 and `make figures`, never in notebook 04."""
    results, seed_means, _ = evaluated
    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))
    outputs.save_table(results, outputs.EVAL_FILE, "smoke")
    outputs.save_table(seed_means, outputs.SEED_MEANS_FILE, "smoke")
    lir = seed_means[seed_means.system == E5].assign(system="e5-small-offline + LIR r=1", post_hoc="LIR r=1",
                                                      post_hoc_fit="evaluation pool")
    outputs.save_table(lir, outputs.POST_HOC_SEED_MEANS_FILE, "smoke")
    assert "e5-small-offline + LIR r=1" not in set(reporting.read_seed_means("smoke", with_post_hoc=False).system)
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
    grid = pd.DataFrame({"variant": ["task-only"] * 2 + ["joint-per-side"] * 2, "lr": [1e-3, 3e-3] * 2,
                         "dev_mono": [.8, .7, .6, .7], "dev_cross": [.6, .5, .4, .5], "dev_multi": [.5, .4, .3, .4]})
    outputs.save_table(grid.assign(S=grid[["dev_mono", "dev_cross", "dev_multi"]].mean(axis=1)),
                       outputs.ADAPTER_LR_GRID_FILE, "smoke")
    outputs.save_table(pd.DataFrame({"model": ["z", "h-s13", "h-s14"], "system": ["z", "h", "h"], "seed": [None, 13, 14],
                                     "translation_cosine": [.5, .7, .8], "centroid_distance": [.4, .2, .3]}),
                       outputs.SEPARATION_FILE, "smoke")
    outputs.save_table(pd.DataFrame({"name": ["a", "b"], "heldout_loss": [7.0, 6.5], "heldout_accuracy": [.1, .12],
                                     "seconds": [60.0, 60.0], "chosen": [False, True], "vocab": [1000, 1000]}),
                       outputs.MLM_HEAD_STUDY_FILE, "smoke")
    outputs.save_table(pd.DataFrame({"candidate": ["a", "b"], "lang": ["de", "de"], "head_loss": [7.0, 6.5]}),
                       outputs.MLM_HEAD_LANGS_FILE, "smoke")
    from xlir_utils import mlm_figures

    vocabs, plot_head_study = [], mlm_figures.plot_head_study

    def spy(per_lang, study, vocab=None):
        vocabs.append(vocab)
        return plot_head_study(per_lang, study, vocab)

    monkeypatch.setattr(mlm_figures, "plot_head_study", spy)
    written = reporting.make_figures("smoke")
    assert vocabs == [1000]  # the head study's figure keeps its uniform-vocabulary line
    for name in ("01_lengths", "02_loss_curves", "03_mlm_loss", "03_task_loss", "04_headline_xquad-r",
                 "05_language_pair_heatmaps", "03_lr_grid", "05_language_separation", "03_head_study"):
        assert name in written
        assert (paths.figures_dir("smoke") / f"{name}.png").stat().st_size > 5_000
    assert (paths.results_dir("smoke") / "tables" / "table1_map.csv").is_file()
    block = reporting.results_markdown("smoke").splitlines()
    assert block[0].startswith("| system | description | seeds |") and len(block) == 2 + 3
    assert block[-1].startswith("| full-hybrid | hybrid α=0.5 | 2 |") and "[" in block[-1]


def test_adapter_comparisons_are_found_from_the_system_columns():
    def adapters(variant, routing=None):
        return SystemSpec("adapters", E5, sampling="hybrid", alpha=0.5, adapter_variant=variant, unseen_routing=routing)

    specs = {"e5": SystemSpec("zero-shot", E5), "full-X-X": SystemSpec("full", E5, sampling="X-X", alpha=1),
             "full-hybrid-a0.25": SystemSpec("full", E5, sampling="hybrid", alpha=0.25),
             "full-hybrid": SystemSpec("full", E5, sampling="hybrid", alpha=0.5),
             "adapters-task-only": adapters("task-only"), "adapters-joint-per-side": adapters("joint-per-side", "own"),
             "adapters-joint-per-side-unseen-en": adapters("joint-per-side", "en"),
             "adapters-joint-per-side-unseen-none": adapters("joint-per-side", "none"),
             "adapters-shared-control": adapters("shared-control"),
             "full-hybrid + LIR r=1": SystemSpec("full", E5, sampling="hybrid", alpha=0.5).with_post_hoc(
                 "LIR r=1", "evaluation pool")}
    frame = pd.DataFrame([{"system": name, **spec.columns()} for name, spec in specs.items()])
    pairs = reporting.adapter_comparisons(frame, 0.5)
    adapter_systems = [s for s in frame.system if s.startswith("adapters-")]
    assert [(a, "full-hybrid") for a in adapter_systems] == pairs[:len(adapter_systems)]  # not the α-sweep point
    assert pairs[len(adapter_systems):] == [("adapters-joint-per-side-unseen-en", "adapters-joint-per-side"),
                                            ("adapters-joint-per-side-unseen-none", "adapters-joint-per-side")]
    assert reporting.adapter_comparisons(frame[~frame.system.str.startswith("full-hybrid")], 0.5)[:1] == [
        ("adapters-joint-per-side-unseen-en", "adapters-joint-per-side")]  # no reference: only the routings
    assert reporting.headline_comparisons(frame, 0.5) == [("full-hybrid", "full-X-X")]
    assert reporting.headline_comparisons(frame, 0.25) == [("full-hybrid-a0.25", "full-X-X")]


def test_headline_rows_keep_post_hoc_rows_of_the_main_systems_only():
    from xlir_utils.reporting.analysis import headline_rows

    hybrid, sweep = (SystemSpec("full", E5, sampling="hybrid", alpha=a) for a in (0.5, 0.25))
    task = SystemSpec("adapters", E5, sampling="hybrid", alpha=0.5, adapter_variant="task-only")
    specs = {"e5": SystemSpec("zero-shot", E5), "e5 + LEACE": SystemSpec("zero-shot", E5).with_post_hoc("LEACE", "NTREX-128"),
             "full-hybrid": hybrid, "full-hybrid + LEACE": hybrid.with_post_hoc("LEACE", "NTREX-128"),
             "full-hybrid-a0.25": sweep, "full-hybrid-a0.25 + LEACE": sweep.with_post_hoc("LEACE", "NTREX-128"),
             "adapters-task-only": task, "adapters-task-only + LIR r=1": task.with_post_hoc("LIR r=1", "evaluation pool")}
    frame = pd.DataFrame([{"system": name, **spec.columns()} for name, spec in specs.items()])
    assert list(headline_rows(frame, 0.5).system) == ["e5", "e5 + LEACE", "full-hybrid", "full-hybrid + LEACE",
                                                      "full-hybrid-a0.25", "adapters-task-only"]


def test_older_tables_are_refused_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))
    outputs.save_table(pd.DataFrame({"system": ["full-X-X"], "training": ["X-X"]}), outputs.SEED_MEANS_FILE, "smoke")
    with pytest.raises(DamagedFileError, match="rerun notebook 04"):
        outputs.read_table(outputs.SEED_MEANS_FILE, "smoke")


def test_readme_adapter_block_reads_each_difference_from_results(tmp_path, monkeypatch):
    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))
    assert "has not compared" in reporting.adapters_markdown("smoke")  # before notebook 04
    specs = {"full-hybrid": SystemSpec("full", E5, sampling="hybrid", alpha=0.5),
             "adapters-mlm-per-side": SystemSpec("adapters", E5, sampling="hybrid", alpha=0.5,
                                                 adapter_variant="mlm-per-side", unseen_routing="own"),
             "adapters-mlm-per-side-unseen-en": SystemSpec("adapters", E5, sampling="hybrid", alpha=0.5,
                                                           adapter_variant="mlm-per-side", unseen_routing="en")}
    means = pd.DataFrame([{"system": name, **spec.columns(), "dataset": "xquad-r", "metric": "map", "setting": "multi",
                           "n_seeds": 3, "mean": .5, "ci_low": .4, "ci_high": .6} for name, spec in specs.items()])

    def row(a, b, dataset, setting, metric, delta):
        return {"a": a, "b": b, "dataset": dataset, "metric": metric, "setting": setting, "delta": delta,
                "ci_low": delta - 0.01, "ci_high": delta + 0.01, "p_value": 0.5, "n_seeds_a": 3, "n_seeds_b": 3}

    cmp = pd.DataFrame([row("adapters-mlm-per-side", "full-hybrid", "xquad-r", "multi", "map", -0.02),
                        row("adapters-mlm-per-side", "full-hybrid", "xquad-r", "mono", "map", 0.004),
                        row("adapters-mlm-per-side", "full-hybrid", "mlqa-r-dev", "multi", "map", 0.9),
                        row("adapters-mlm-per-side-unseen-en", "adapters-mlm-per-side", "xquad-r", "multi", "map", 0.7)])
    unseen = pd.DataFrame([row("adapters-mlm-per-side", "full-hybrid", "xquad-r, el/th queries", "multi", "map", -0.05),
                           row("adapters-mlm-per-side-unseen-en", "adapters-mlm-per-side", "xquad-r, el/th queries",
                               "multi", "map", -0.03)])
    outputs.save_table(means, outputs.SEED_MEANS_FILE, "smoke")
    outputs.save_table(cmp, outputs.SEED_COMPARISONS_FILE, "smoke")
    outputs.save_table(unseen, outputs.UNSEEN_COMPARISONS_FILE, "smoke")
    lines = reporting.adapters_markdown("smoke").splitlines()
    assert "el/th queries" in lines[2]
    own, english = lines[4], lines[5]
    assert own.startswith("| adapters: mlm-per-side (hybrid α=0.5) (`adapters-mlm-per-side`) | +0.004 [-0.006, +0.014] |")
    assert "| -0.020 [-0.030, -0.010] |" in own and "| -0.050 [-0.060, -0.040] |" in own and "0.9" not in own
    assert english.endswith("| -0.030 [-0.040, -0.020] |")  # against its own routing, on the unseen queries
