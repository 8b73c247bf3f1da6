"""Figures: written reproducibly as PNG + PDF, ordered and coloured from the data."""
import numpy as np
import pandas as pd
import pytest

from xlir_utils import figures, outputs
from xlir_utils.data import load_retrieval_set
from xlir_utils.evaluation import evaluate
from xlir_utils.seed_statistics import run_values, seed_summary
from xlir_utils.systems import SystemSpec, label_rows


@pytest.fixture(scope="module")
def evaluated(shared_data):
    """Three systems on smoke-sized XQuAD-R: a paper-profile baseline name and two trained runs."""
    rset = load_retrieval_set("xquad-r", articles=1)
    rng = np.random.default_rng(0)
    tables, per_query, values = [], [], []
    for name, spec, noise in (("xlm-roberta-base", SystemSpec("zero-shot", "xlm-roberta-base"), 3.0),
                              ("full-X-X", SystemSpec("full", "m", sampling="X-X", alpha=1), 1.5),
                              ("full-hybrid", SystemSpec("full", "m", sampling="hybrid", alpha=0.5), 1.0)):
        labels = {"model": name, "system": name, "seed": None, **spec.columns()}
        content = {qid: rng.normal(size=32) for qid in rset.queries.question_id.unique()}
        q = np.stack([content[qid] + noise * rng.normal(size=32) for qid in rset.queries.question_id])
        owner = {int(j): rset.queries.question_id.iat[i] for i, rel in enumerate(rset.relevant) for j in rel}
        c = np.stack([(content[owner[j]] if j in owner else rng.normal(size=32)) + noise * rng.normal(size=32)
                      for j in range(len(rset.candidates))])
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        ev = evaluate(rset, q, c, bootstrap=50)
        tables.append(label_rows(ev.table, labels))
        values.append(run_values(ev, labels=labels, dataset=rset.name))
        multi = ev.per_query[ev.per_query.setting == "multi"]
        per_query.append(label_rows(pd.DataFrame({"dataset": rset.name, "n_relevant": multi.n_rel.to_numpy(),
                                                  "rank_distance": multi.rank_distance.to_numpy()}), labels))
    return pd.concat(tables, ignore_index=True), pd.concat(per_query, ignore_index=True), \
        seed_summary(values, n_boot=50)[0]


@pytest.fixture(scope="module")
def results(evaluated):
    return evaluated[0]


@pytest.fixture(scope="module")
def seed_means(evaluated):
    return evaluated[2]


def test_figures_are_written_reproducibly(results, seed_means, tmp_path, monkeypatch):
    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))
    from xlir_utils import paths

    png, pdf = outputs.save_figure(figures.plot_headline(seed_means, results, baselines=("xlm-roberta-base",)),
                                   "t", "quick")
    assert png.stat().st_size > 10_000 and pdf.read_bytes().startswith(b"%PDF")
    again = outputs.save_figure(figures.plot_headline(seed_means, results, baselines=("xlm-roberta-base",)),
                                "t", "quick")
    assert again[0].read_bytes() == png.read_bytes() and again[1].read_bytes() == pdf.read_bytes()  # no timestamps
    assert png.parent == paths.figures_dir("quick")
    smoke = outputs.save_figure(figures.plot_headline(seed_means, results, baselines=("xlm-roberta-base",)),
                                "t", "smoke")  # scratch figures: PNG only
    assert [p.name for p in smoke] == ["t.png"] and smoke[0].parent == paths.figures_dir("smoke")


def test_headline_bars_follow_the_baselines_then_training(results, seed_means):
    fig = figures.plot_headline(seed_means, results, baselines=("xlm-roberta-base",))
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["xlm-roberta-base", "full-X-X", "full-hybrid"]


def test_heatmaps_of_a_paper_baseline_and_the_difference(results):
    fig = figures.plot_pair_heatmaps(results, ["xlm-roberta-base", "full-X-X", "full-hybrid"],
                                     diff=("full-X-X", "full-hybrid"))
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["xlm-roberta-base", "full-X-X", "full-hybrid", "full-hybrid − full-X-X"]


def test_alpha_sweep_needs_three_alphas(seed_means):
    assert figures.plot_alpha_sweep(seed_means[seed_means.system != "full-X-X"]) is None
    sweep = pd.concat([seed_means, seed_means[seed_means.system == "full-hybrid"].assign(system="a", sampling="X-Y",
                                                                                          alpha=0.0)])
    fig = figures.plot_alpha_sweep(sweep)
    xs = sorted({round(float(x), 3) for x in fig.axes[0].lines[0].get_xdata()})
    assert xs == [0.0, 0.5, 1.0]


def test_rank_distance_boxes_per_system(evaluated):
    _, per_query, _ = evaluated
    fig = figures.plot_rank_distance_distributions(per_query, baselines=("xlm-roberta-base",))
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["xlm-roberta-base", "full-X-X", "full-hybrid"]


def test_mlm_figure_shows_the_head_per_language_when_no_adapter_was_trained():
    log = pd.DataFrame({"phase": "head", "lang": "all", "step": [1, 2, 3], "loss": [7.6, 7.2, 7.1]})
    held = pd.DataFrame({"lang": ["en", "de", "th"], "head_loss": [6.9, 7.0, 7.2]})
    fig = figures.plot_mlm_loss(log, held)
    head_ax, lang_ax = fig.axes
    assert [round(p.get_height(), 1) for p in lang_ax.patches] == [6.9, 7.0, 7.2]  # en, de, th in the kit's order
    assert "no language adapter trained" in lang_ax.get_title()
    assert list(head_ax.get_lines()[0].get_ydata()) == [7.6, 7.2, 7.1]


def test_head_study_and_matrix_figures_show_what_they_say():
    from xlir_utils import mlm_figures

    per_lang = pd.DataFrame({"candidate": ["a", "a", "b", "b"], "lang": ["de", "en", "de", "en"],
                             "head_loss": [6.0, 6.5, 5.0, 5.5]})
    study = pd.DataFrame({"name": ["a", "b"], "heldout_loss": [6.25, 5.25], "heldout_accuracy": [0.1, 0.2],
                          "seconds": [60, 120], "chosen": [False, True]})
    fig = mlm_figures.plot_head_study(per_lang, study, vocab=1000)
    ax = fig.axes[0]
    assert [list(line.get_ydata()) for line in ax.get_lines()[:2]] == [[6.5, 6.0], [5.5, 5.0]]  # en, de: kit order
    assert ax.get_lines()[1].get_linestyle() == "-" and ax.get_lines()[0].get_linestyle() == ":"
    assert "chosen" in ax.get_legend().get_texts()[1].get_text()
    matrix = pd.DataFrame({"adapter": ["de", "de", "en", "en"], "lang": ["de", "en", "de", "en"],
                           "delta": [-0.4, 0.1, 0.0, -0.2]})
    mfig = mlm_figures.plot_mlm_matrix(matrix)
    image = mfig.axes[0].get_images()[0]
    assert image.get_clim() == (-0.4, 0.4)  # symmetric around 0, fitted to the data
    assert image.get_array()[0].tolist() == [-0.2, 0.0]  # row en (kit order), columns en, de


def test_lr_grid_and_separation_figures_show_what_they_say():
    from xlir_utils import adapter_figures
    from xlir_utils.language_separation import separation_summary

    grid = pd.DataFrame({"variant": ["task-only"] * 3, "lr": [3e-3, 3e-4, 1e-3], "S": [.5, .6, .7],
                         "dev_mono": [.8] * 3, "dev_cross": [.6] * 3, "dev_multi": [.4] * 3})
    ax = adapter_figures.plot_lr_grid(grid).axes[0]
    line, ring = ax.get_lines()[:2]
    assert list(line.get_xdata()) == [3e-4, 1e-3, 3e-3] and list(line.get_ydata()) == [.6, .7, .5]  # sorted by rate
    assert list(ring.get_xdata()) == [1e-3]  # the rate with the best S is ringed
    table = pd.DataFrame({"model": ["z", "h-s13", "h-s14"], "system": ["z", "h", "h"], "seed": [None, 13, 14],
                          "translation_cosine": [.5, .7, .9], "centroid_distance": [.4, .2, .3]})
    fig = adapter_figures.plot_language_separation(separation_summary(table))
    bars = fig.axes[0].containers[0]
    x = bars.lines[0].get_xdata()
    assert list(x) == [.5, pytest.approx(.8)]  # seed means, in the summary's order
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["z", "h"]


def test_headline_shows_each_system_minus_the_reference_below(results, seed_means):
    comparisons = pd.DataFrame([
        {"a": "full-hybrid", "b": "full-X-X", "dataset": "xquad-r", "metric": "map", "setting": "multi",
         "delta": 0.05, "ci_low": 0.04, "ci_high": 0.07},
        {"a": "xlm-roberta-base", "b": "full-hybrid", "dataset": "xquad-r", "metric": "map", "setting": "multi",
         "delta": -0.01, "ci_low": -0.02, "ci_high": 0.005},
        {"a": "full-hybrid", "b": "full-X-X", "dataset": "mlqa-r", "metric": "map", "setting": "multi",
         "delta": 0.9, "ci_low": 0.8, "ci_high": 1.0}])
    diffs = figures.paired_against(comparisons, "full-hybrid", "xquad-r").set_index("system")
    # hybrid - X-X turned round into X-X - hybrid, its interval mirrored; the other dataset left out
    assert diffs.loc["full-X-X", ["delta", "ci_low", "ci_high"]].tolist() == [-0.05, -0.07, -0.04]
    assert diffs.loc["xlm-roberta-base", ["delta", "ci_low", "ci_high"]].tolist() == [-0.01, -0.02, 0.005]
    fig = figures.plot_headline(seed_means, results, baselines=("xlm-roberta-base",), comparisons=comparisons,
                                reference="full-hybrid")
    assert len(fig.axes) == 8
    bottom_multi = fig.axes[6]  # multi mAP, system - full-hybrid: one dot per row, in the rows' order
    assert [t.get_text() for t in fig.axes[4].get_yticklabels()] == ["xlm-roberta-base", "full-X-X"]
    dots = [line for line in bottom_multi.lines if line.get_marker() == "o"]
    assert [float(d.get_xdata()[0]) for d in dots] == [-0.01, -0.05] and [d.get_ydata()[0] for d in dots] == [0, 1]
    assert bottom_multi.get_xlim()[0] < -0.07 and bottom_multi.get_xlim()[1] > 0.005  # every interval and 0 shown
    multi = seed_means[(seed_means.dataset == "xquad-r") & (seed_means.setting == "multi") & (seed_means.metric == "map")]
    seeds = results[(results.dataset == "xquad-r") & (results.setting == "multi") & (results.metric == "map")
                    & (results.query_lang == "all")].value
    drawn = np.concatenate([multi.ci_low, multi.ci_high, multi["mean"], seeds])
    lo, hi = drawn.min(), drawn.max()  # the top multi-mAP panel is zoomed to what it draws, not drawn from 0
    np.testing.assert_allclose(fig.axes[2].get_xlim(), (lo - 0.08 * (hi - lo), hi + 0.08 * (hi - lo)))


def test_each_colour_means_one_thing(seed_means, evaluated):
    """Samplings, settings and system groups have palettes of their own, and the figures use them."""
    from matplotlib.colors import to_hex

    from xlir_utils import palettes
    from xlir_utils.languages import LANG_COLOURS
    from xlir_utils.systems.labels import GROUP_COLOURS

    hues = [*palettes.SAMPLING_COLOURS.values(), *palettes.SETTING_COLOURS.values(), *GROUP_COLOURS.values()]
    assert len(set(hues)) == len(hues)
    assert not set(palettes.SAMPLING_COLOURS.values()) & set(LANG_COLOURS.values())
    sweep = pd.concat([seed_means, seed_means[seed_means.system == "full-hybrid"].assign(system="a", sampling="X-Y",
                                                                                          alpha=0.0)])
    fig = figures.plot_alpha_sweep(sweep)
    assert {bars.get_label(): to_hex(bars.lines[0].get_color()) for bars in fig.axes[0].containers} \
        == palettes.SETTING_COLOURS
    logs = pd.DataFrame({"run": ["full-X-X-s13"] * 3 + ["full-hybrid-s13"] * 3, "system": ["full-X-X"] * 3 + [
        "full-hybrid"] * 3, "step": [1, 2, 3] * 2, "loss": [1.0, 0.8, 0.7, 1.2, 0.9, 0.6]})
    fig = figures.plot_loss_curves(logs, colours={"full-X-X": palettes.sampling_colour("X-X"),
                                                  "full-hybrid": palettes.sampling_colour("hybrid")})
    assert [to_hex(line.get_color()) for line in fig.axes[0].lines] == [palettes.SAMPLING_COLOURS["X-X"],
                                                                        palettes.SAMPLING_COLOURS["hybrid"]]
    _, per_query, _ = evaluated  # a legend names the group colours the boxes are drawn in
    fig = figures.plot_rank_distance_distributions(per_query, baselines=("xlm-roberta-base",))
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["zero-shot", "full"]


def test_the_temperature_figure_draws_hybrid_minus_x_x_per_temperature():
    from xlir_utils import recipe_study

    rows = []
    for tau, gap in ((0.01, 0.03), (0.02, 0.02), (0.05, 0.01)):
        for sampling, base in (("X-X", 0.5), ("X-Y", 0.52), ("hybrid", 0.5 + gap)):
            for step in (50, 100):
                rows.append({"stage": "A", "sampling": sampling, "temperature": tau, "lr": 3e-5, "step": step,
                             "dev_mono": 0.7, "dev_cross": 0.6, "dev_multi": base + step / 1e3, "S": base,
                             "dev_rank_distance": 100 - 1000 * gap * (sampling == "hybrid")})
    chosen = {"temperature": 0.02, "lr": 3e-5, "steps": 100}
    gap = recipe_study.temperature_gap(pd.DataFrame(rows), chosen)
    assert gap.index.tolist() == [0.01, 0.02, 0.05]
    assert np.allclose(gap["multi"], [0.03, 0.02, 0.01]) and np.allclose(gap["mono"], 0)
    assert np.allclose(gap["rank distance"], [-30, -20, -10])
    fig = figures.plot_temperature_gap(gap, chosen)
    multi = [line for line in fig.axes[0].lines if line.get_label() == "multi mAP"][0]
    assert np.allclose(multi.get_ydata(), [0.03, 0.02, 0.01]) and np.allclose(multi.get_xdata(), [0.01, 0.02, 0.05])
