"""``make figures``: every figure and table of notebooks 01-05 redrawn from ``results/``, without
training or encoding (notebook 05 §9)."""
from __future__ import annotations

import logging

from .. import figures as F
from .. import adapter_figures, manifest, mlm_figures, outputs, paths, recipe_study
from ..config import load
from ..language_separation import separation_summary
from ..palettes import sampling_colour
from ..training import SAMPLINGS, run_name
from .analysis import full_system, headline_rows, heatmap_systems
from .tables import first_seed_logs, read_results, read_seed_means, write_tables

logger = logging.getLogger(__name__)


def sampling_loss_curves(logs):
    """The first seed's X-X, X-Y and hybrid loss curves in the samplings' colours (notebook 02 §5)."""
    return F.plot_loss_curves(first_seed_logs(logs, [run_name(s) for s in SAMPLINGS]),
                              colours={run_name(s): sampling_colour(s) for s in SAMPLINGS})


def make_figures(profile: str) -> list[str]:
    """Every figure of notebooks 01-05 from the files in ``results/`` (and the recipe study's
    temperature table, ``results/tables/recipe_temperature_gap.csv``); returns the names of the
    figures written (notebook 05 §9, ``make figures``).

    No data is parsed, nothing is trained or encoded: each figure is redrawn from the table its
    notebook stored (a figure whose table is missing is skipped).
    """
    cfg = load(profile)
    base = cfg.baselines
    folder = paths.results_dir(profile)
    for writer, older in manifest.mixed_runs(folder).items():
        logger.warning("results/ mixes two runs of %s: %s come from an earlier run than its other tables; "
                       "rerun %s for figures from one run", writer, ", ".join(older), writer)
    written = []

    def save(fig, name):
        outputs.save_figure(fig, name, profile)
        written.append(name)

    sources = ((outputs.LENGTHS_FILE, "01_lengths", F.plot_length_distributions),
               (outputs.TRAIN_LOGS_FILE, "02_loss_curves", sampling_loss_curves),
               (outputs.ADAPTER_LOGS_FILE, "03_task_loss", lambda t: F.plot_loss_curves(first_seed_logs(t))))
    for file, name, plot in sources:
        if (folder / file).is_file():
            save(plot(outputs.read_table(file, profile)), name)
    if (folder / outputs.MLM_LOG_FILE).is_file():
        held = outputs.read_table(outputs.MLM_HELDOUT_FILE, profile) if (folder / outputs.MLM_HELDOUT_FILE).is_file() \
            else None
        save(F.plot_mlm_loss(outputs.read_table(outputs.MLM_LOG_FILE, profile), held), "03_mlm_loss")
    if (folder / outputs.MLM_HEAD_STUDY_FILE).is_file() and (folder / outputs.MLM_HEAD_LANGS_FILE).is_file():
        study = outputs.read_table(outputs.MLM_HEAD_STUDY_FILE, profile)
        vocab = int(study.vocab.iat[0]) if "vocab" in study else None  # (tables written before it was recorded)
        save(mlm_figures.plot_head_study(outputs.read_table(outputs.MLM_HEAD_LANGS_FILE, profile), study, vocab),
             "03_head_study")
    if (folder / outputs.MLM_MATRIX_FILE).is_file():
        save(mlm_figures.plot_mlm_matrix(outputs.read_table(outputs.MLM_MATRIX_FILE, profile)), "03_mlm_matrix")
    if (folder / outputs.ADAPTER_LR_GRID_FILE).is_file():
        lr_grid = outputs.read_table(outputs.ADAPTER_LR_GRID_FILE, profile)
        if len(lr_grid):
            save(adapter_figures.plot_lr_grid(lr_grid), "03_lr_grid")
    if (folder / outputs.SEPARATION_FILE).is_file():
        save(adapter_figures.plot_language_separation(
            separation_summary(outputs.read_table(outputs.SEPARATION_FILE, profile))), "05_language_separation")
    grid, choice = recipe_study.read_grid(profile), recipe_study.read_choice(profile)
    if grid is not None and choice is not None:
        save(F.plot_recipe_study(grid, choice["chosen"]), "02_recipe_study")
        gap = recipe_study.temperature_gap(grid, choice["chosen"])
        outputs.save_table(gap.round(4), f"{outputs.TABLES_FOLDER}/recipe_temperature_gap.csv", profile, index=True)
        save(F.plot_temperature_gap(gap, choice["chosen"]), "02_temperature_gap")
    results, seed_means = read_results(profile), read_seed_means(profile)
    comparisons = outputs.read_table(outputs.SEED_COMPARISONS_FILE, profile) \
        if (folder / outputs.SEED_COMPARISONS_FILE).is_file() else None
    hybrid = full_system(seed_means, "hybrid", cfg.train.alpha)
    for dataset in [d for d in results.dataset.unique() if d != "tatoeba"]:
        save(F.plot_headline(headline_rows(seed_means, cfg.train.alpha), results, dataset, base, comparisons, hybrid),
             f"04_headline_{dataset}")
    if "tatoeba" in set(results.dataset):
        save(F.plot_tatoeba(results, base), "04_tatoeba")
    models, diff = heatmap_systems(results, base, cfg.train.alpha)
    if len(models) >= 2:
        save(F.plot_pair_heatmaps(results, models, diff=diff), "05_language_pair_heatmaps")
    if "same_lang_top10" in set(results.metric):  # the systems as trained, as notebook 05 §4 draws it
        save(F.plot_same_language_share(read_results(profile, with_post_hoc=False), baselines=base),
             "05_same_language_top10")
    if (folder / outputs.PER_QUERY_FILE).is_file():
        save(F.plot_rank_distance_distributions(outputs.read_table(outputs.PER_QUERY_FILE, profile), baselines=base),
             "05_rank_distance_distributions")
    if (folder / outputs.PROJECTION_FILE).is_file():
        save(F.plot_projection(outputs.read_table(outputs.PROJECTION_FILE, profile)), "05_projection")
    fig = F.plot_alpha_sweep(seed_means)
    if fig is not None:
        save(fig, "05_alpha_sweep")
    write_tables(profile, base)
    return written
