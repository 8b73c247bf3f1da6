"""Paper-style tables from ``results/`` only, and ``make figures`` (notebooks 04-05).

Headline tables are **seed means** (:mod:`xlir_utils.seed_statistics`: the mean over a system's
training seeds, with a 95 % interval over queries and seeds); per-language tables average the
seeds. ``python -m xlir_utils.reporting [profile]`` (``make figures``) rebuilds every table and
figure from the result files, without training or encoding, and (``quick``) the README's
results block.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

import pandas as pd

from . import outputs, paths
from .io_utils import atomic_write_csv
from .system_labels import LANG_ORDER, mean_over_seeds, system_order

# The paper's Table 1 (mAP, macro means) and Table 2 (rank distance), arXiv 2408.10536.
PAPER = pd.DataFrame(
    [
        ("XLM-R", "X-X", .792, .674, .547, .648, .584, .473, 410, 288),
        ("XLM-R", "X-Y", .755, .700, .593, .626, .620, .508, 295, 227),
        ("XLM-R", "hybrid", .798, .705, .593, .648, .623, .512, 287, 227),
        ("LaBSE", "X-X", .808, .752, .652, .681, .656, .550, 262, 225),
        ("LaBSE", "X-Y", .801, .762, .679, .671, .677, .576, 225, 198),
        ("LaBSE", "hybrid", .817, .767, .682, .686, .681, .579, 221, 195),
    ],
    columns=["model", "training", "xquad-r mono", "xquad-r cross", "xquad-r multi",
             "mlqa-r mono", "mlqa-r cross", "mlqa-r multi", "xquad-r rank_distance", "mlqa-r rank_distance"],
)





def read_results(profile: str, *, with_lir: bool = True) -> pd.DataFrame:
    """Every tidy result row of a profile: notebook 04's table, plus notebook 05's LIR rows
    unless ``with_lir=False`` (notebook 04 shows only what it computed; notebook 05 and
    ``make figures`` join LIR in)."""
    return _read(profile, outputs.EVAL_FILE, outputs.LIR_FILE if with_lir else None)


def read_seed_means(profile: str, *, with_lir: bool = True) -> pd.DataFrame:
    """Every system's seed means (notebook 04), plus the LIR systems' (notebook 05) unless
    ``with_lir=False``."""
    return _read(profile, outputs.SEED_MEANS_FILE, outputs.LIR_SEED_MEANS_FILE if with_lir else None)


def _read(profile: str, first: str, second: str | None) -> pd.DataFrame:
    folder = paths.results_dir(profile)
    if not (folder / first).is_file():
        raise FileNotFoundError(f"No {first} in {folder}: run notebook 04 in the {profile!r} profile first.")
    frames = [outputs.read_table(name, profile) for name in (first, second) if name and (folder / name).is_file()]
    return pd.concat(frames, ignore_index=True)


def _ordered(table: pd.DataFrame, frame: pd.DataFrame, baselines) -> pd.DataFrame:
    order = system_order(frame.assign(model=frame.system), baselines)
    return table.reindex([i for m in order for i in table.index if i[0] == m])


def table1(seed_means: pd.DataFrame, metric: str = "map", baselines: Sequence[str] = ()) -> pd.DataFrame:
    """The paper's Table 1 layout: Mo./Cr./Mul. macro means per dataset, one row per system, the
    mean over its seeds (notebook 04 §4)."""
    rows = seed_means[(seed_means.metric == metric) & seed_means.setting.isin(["mono", "cross", "multi"])]
    table = rows.pivot_table(index=["system", "training"], columns=["dataset", "setting"], values="mean")
    table = table.reindex(columns=["mono", "cross", "multi"], level=1)
    return _ordered(table, rows, baselines)


def table1_with_intervals(seed_means: pd.DataFrame, dataset: str, metric: str = "map",
                          baselines: Sequence[str] = ()) -> pd.DataFrame:
    """Table 1 for one dataset as text: ``mean [low, high]`` per setting, the seeds' spread (sd)
    and the number of seeds (notebooks 04 §4, 05 §5)."""
    rows = seed_means[(seed_means.dataset == dataset) & (seed_means.metric == metric)]
    cell = rows.assign(text=[f"{m:.3f} [{lo:.3f}, {hi:.3f}]" + (f" sd {sd:.3f}" if sd == sd else "")
                             for m, lo, hi, sd in zip(rows["mean"], rows.ci_low, rows.ci_high, rows.sd)])
    table = cell.pivot_table(index=["system", "training"], columns="setting", values="text", aggfunc="first")
    table = table.reindex(columns=[s for s in ("mono", "cross", "multi") if s in table.columns])
    table["seeds"] = cell.groupby(["system", "training"]).n_seeds.max()
    return _ordered(table, rows, baselines)


def table2(seed_means: pd.DataFrame, baselines: Sequence[str] = ()) -> pd.DataFrame:
    """The paper's Table 2 layout: rank distance (lower is better), seed mean and its interval
    (notebook 04 §5)."""
    rows = seed_means[seed_means.metric == "rank_distance"]
    table = rows.pivot_table(index=["system", "training"], columns="dataset", values=["mean", "ci_low", "ci_high"])
    return _ordered(table, rows, baselines)


def per_language(results: pd.DataFrame, dataset: str, setting: str, metric: str = "map",
                 baselines: Sequence[str] = ()) -> pd.DataFrame:
    """Tables 3-8 layout: one row per system (the mean over its seeds), one column per query
    language (notebooks 04 §6, 05 §1)."""
    results = mean_over_seeds(results)
    rows = results[(results.dataset == dataset) & (results.setting == setting) & (results.metric == metric)
                   & (results.query_lang != "all") & results.cand_lang.isin(["all", "pool", *LANG_ORDER])]
    if setting == "mono":
        rows = rows[rows.cand_lang == rows.query_lang]
    table = rows.groupby(["model", "query_lang"]).value.mean().unstack()
    langs = [lang for lang in LANG_ORDER if lang in table.columns]
    return table.reindex(index=[m for m in system_order(results, baselines) if m in table.index], columns=langs)


def paper_table() -> pd.DataFrame:
    """The paper's numbers (XLM-R and LaBSE trained on in-house data; not our protocol; notebook 04 §4)."""
    return PAPER.set_index(["model", "training"])


def xtreme_r_table(seed_means: pd.DataFrame, baselines: Sequence[str] = ()) -> pd.DataFrame:
    """The XTREME-R retrieval group as XTREME-R reports it, x100 (notebook 04 §8): Tatoeba accuracy
    (English queries), LAReQA mAP@20 (XQuAD-R pooled, divisor min(20, |R|)) and Mewsli-X mAP@20
    where it was run; seed means, one row per system."""
    cols = {"Tatoeba acc (en→xx)": ("tatoeba en→xx", "accuracy", "all"),
            "Tatoeba acc (xx→en)": ("tatoeba xx→en", "accuracy", "all"),
            "LAReQA mAP@20": ("xquad-r", "map@20_lareqa", "multi"),
            "Mewsli-X mAP@20": ("mewsli-x", "map@20", "all")}
    out = {}
    for col, (dataset, metric, setting) in cols.items():
        rows = seed_means[(seed_means.dataset == dataset) & (seed_means.metric == metric)
                          & (seed_means.setting == setting)]
        if len(rows):
            out[col] = rows.set_index(["system", "training"])["mean"] * 100
    table = pd.DataFrame(out)
    if table.empty:
        return table
    return _ordered(table, seed_means[seed_means.system.isin(table.index.get_level_values(0))], baselines)


def systems_by_training(frame: pd.DataFrame) -> dict[str, str]:
    """The first system of each training description (``X-X`` -> ``full-X-X``), from the data."""
    first = frame.drop_duplicates("system")
    return dict(zip(first.training, first.system))


def adapter_comparisons(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """The comparisons the kit's own question needs (notebooks 03 §6, 04 §7): every adapter variant
    against full fine-tuning with hybrid batches, and every per-side variant's routing of never-seen
    languages (through the English adapter, through none) against its own routing; from the data."""
    from .system_labels import system_kind

    by = systems_by_training(frame)
    adapters = [(s, t) for t, s in by.items() if system_kind(t) == "adapters"]
    pairs = [(s, by["hybrid"]) for s, _ in adapters] if "hybrid" in by else []
    for s, t in adapters:
        for unseen in ("/unseen-en", "/unseen-none"):
            own = t.replace(unseen, "")
            if unseen in t and own in by:
                pairs.append((s, by[own]))
    return pairs


def headline_comparisons(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """The paired comparisons the paper's claim needs, found by training: hybrid - X-X and
    hybrid - X-Y (notebook 04 §7)."""
    by = systems_by_training(frame)
    return [(by["hybrid"], by[other]) for other in ("X-X", "X-Y") if "hybrid" in by and other in by]


def heatmap_systems(results: pd.DataFrame, baselines: Sequence[str]) -> tuple[list[str], tuple[str, str] | None]:
    """The systems of the language-pair heatmaps (the first baseline, the X-X and the hybrid
    system) and the difference to draw (hybrid - X-X), chosen by their ``training`` (notebook 05 §3)."""
    frame = results if "system" in results.columns else results.assign(system=results.model)
    by = systems_by_training(frame)
    xx, hy = by.get("X-X"), by.get("hybrid")
    first = next((b for b in baselines if b in set(frame.system)), None)
    models = [m for m in (first, xx, hy) if m is not None]
    return models, (xx, hy) if xx and hy else None


def write_tables(profile: str, baselines: Sequence[str] = ()) -> dict[str, pd.DataFrame]:
    """Table 1, Table 2 and per-language tables as CSV under results/tables/ (notebooks 04-05)."""
    results, seed_means = read_results(profile), read_seed_means(profile)
    folder = paths.results_dir(profile) / "tables"
    tables = {"table1_map": table1(seed_means, baselines=baselines),
              "table2_rank_distance": table2(seed_means, baselines),
              "xtreme_r_retrieval": xtreme_r_table(seed_means, baselines)}
    for dataset in [d for d in results.dataset.unique() if d != "tatoeba"]:
        tables[f"{dataset}_table1_with_intervals"] = table1_with_intervals(seed_means, dataset, baselines=baselines)
        for setting in ("mono", "cross", "multi"):
            tables[f"{dataset}_{setting}_map_per_language"] = per_language(results, dataset, setting,
                                                                           baselines=baselines)
    for name, table in tables.items():
        atomic_write_csv(table.round(4), folder / f"{name}.csv", index=True)
    return tables


def first_seed_logs(logs: pd.DataFrame, systems: Sequence[str] | None = None) -> pd.DataFrame:
    """The training logs of the first seed (``seed`` column), of ``systems`` only if given (``system``
    column): what notebooks 02 §6 and 03 §4 plot."""
    if "seed" in logs.columns:
        logs = logs[logs.seed == logs.seed.min()]
    if systems is not None and "system" in logs.columns:
        logs = logs[logs.system.isin(systems)]
    return logs


def make_figures(profile: str) -> list[str]:
    """Every figure of notebooks 01-05 from the files in ``results/``; returns the names written
    (notebook 05 §8, ``make figures``).

    No data is parsed, nothing is trained or encoded: each figure is redrawn from the table its
    notebook stored (a figure whose table is missing is skipped).
    """
    from . import figures as F
    from . import recipe_study
    from .config import load
    from .training import SAMPLINGS, run_name

    cfg = load(profile)
    base = cfg.baselines
    folder = paths.results_dir(profile)
    written = []

    def save(fig, name):
        outputs.save_figure(fig, name, profile)
        written.append(name)

    sources = ((outputs.LENGTHS_FILE, "01_lengths", F.plot_length_distributions),
               (outputs.TRAIN_LOGS_FILE, "02_loss_curves",
                lambda t: F.plot_loss_curves(first_seed_logs(t, [run_name(s) for s in SAMPLINGS]))),
               (outputs.ADAPTER_LOGS_FILE, "03_task_loss", lambda t: F.plot_loss_curves(first_seed_logs(t))))
    for file, name, plot in sources:
        if (folder / file).is_file():
            save(plot(outputs.read_table(file, profile)), name)
    if (folder / outputs.MLM_LOG_FILE).is_file():
        held = outputs.read_table(outputs.MLM_HELDOUT_FILE, profile) if (folder / outputs.MLM_HELDOUT_FILE).is_file() \
            else None
        save(F.plot_mlm_loss(outputs.read_table(outputs.MLM_LOG_FILE, profile), held,
                             head_max_loss=cfg.adapters.head_max_loss), "03_mlm_loss")
    grid, choice = recipe_study.read_grid(profile), recipe_study.read_choice(profile)
    if grid is not None and choice is not None:
        save(F.plot_recipe_study(grid, choice["chosen"]), "02_recipe_study")
    results, seed_means = read_results(profile), read_seed_means(profile)
    for dataset in [d for d in results.dataset.unique() if d != "tatoeba"]:
        save(F.plot_headline(seed_means, results, dataset, base), f"04_headline_{dataset}")
    if "tatoeba" in set(results.dataset):
        save(F.plot_tatoeba(results, base), "04_tatoeba")
    models, diff = heatmap_systems(results, base)
    if len(models) >= 2:
        save(F.plot_pair_heatmaps(results, models, diff=diff), "05_language_pair_heatmaps")
    if "same_lang_top10" in set(results.metric):
        save(F.plot_same_language_share(results, baselines=base), "05_same_language_top10")
    if (folder / outputs.PER_QUERY_FILE).is_file():
        save(F.plot_rank_distance_distributions(outputs.read_table(outputs.PER_QUERY_FILE, profile), baselines=base),
             "05_rank_distance_distributions")
    if (folder / outputs.PROJECTION_FILE).is_file():
        save(F.plot_projection(outputs.read_table(outputs.PROJECTION_FILE, profile)), "05_projection")
    fig = F.plot_alpha_sweep(seed_means, default_alpha=cfg.train.alpha)
    if fig is not None:
        save(fig, "05_alpha_sweep")
    write_tables(profile, base)
    return written


def results_markdown(profile: str = "quick", dataset: str = "xquad-r") -> str:
    """The README's results block: seed means with their 95 % intervals (queries and seeds) on
    ``dataset``, and rank distance, one row per system, from results/."""
    from .config import load

    seed_means = read_seed_means(profile)
    baselines = load(profile).baselines
    rows = seed_means[seed_means.dataset == dataset]
    order = system_order(rows.assign(model=rows.system), baselines)
    head = ["system", "training", "seeds", "Mo. mAP", "Cr. mAP", "Mul. mAP", "rank distance"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for system in order:
        r = rows[rows.system == system]
        cells = [system, r.training.iat[0], str(int(r.n_seeds.max()))]
        for setting, metric, fmt in (("mono", "map", ".3f"), ("cross", "map", ".3f"), ("multi", "map", ".3f"),
                                     ("multi", "rank_distance", ".0f")):
            hit = r[(r.setting == setting) & (r.metric == metric)]
            cells.append("" if hit.empty else
                         f"{hit['mean'].iat[0]:{fmt}} [{hit.ci_low.iat[0]:{fmt}}, {hit.ci_high.iat[0]:{fmt}}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


README_MARKERS = ("<!-- RESULTS:BEGIN (make figures writes this block from results/) -->", "<!-- RESULTS:END -->")


def update_readme(profile: str = "quick") -> bool:
    """Rewrite the README's results block from results/; returns whether it changed."""
    from .io_utils import atomic_write_bytes

    readme = paths.project_root() / "README.md"
    text = readme.read_text()
    begin, end = README_MARKERS
    if begin not in text or end not in text:
        return False
    new = text[: text.index(begin) + len(begin)] + "\n" + results_markdown(profile) + "\n" + text[text.index(end):]
    if new != text:
        atomic_write_bytes(new.encode(), readme)
    return new != text


if __name__ == "__main__":
    from .config import profile_name

    name = profile_name(sys.argv[1] if len(sys.argv) > 1 else None)
    print("figures written:", ", ".join(make_figures(name)), "->", paths.figures_dir(name))
    if name == "quick" and update_readme(name):
        print("README results block updated from results/")
