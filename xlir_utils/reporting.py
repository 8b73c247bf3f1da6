"""Paper-style tables from ``results/`` only, and ``make figures`` (notebooks 04-05).

``python -m xlir_utils.reporting [profile]`` (``make figures``) rebuilds every table and
figure from the result files, without training or encoding, and (``quick``) the README's
results block.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

import pandas as pd

from . import outputs, paths
from .figures import LANG_ORDER
from .io_utils import atomic_write_csv
from .system_labels import system_order

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
    folder = paths.results_dir(profile)
    names = (outputs.EVAL_FILE, outputs.LIR_FILE) if with_lir else (outputs.EVAL_FILE,)
    frames = [pd.read_csv(folder / name) for name in names if (folder / name).is_file()]
    if not (folder / outputs.EVAL_FILE).is_file():
        raise FileNotFoundError(f"No {outputs.EVAL_FILE} in {folder}: run notebook 04 in the {profile!r} profile first.")
    return pd.concat(frames, ignore_index=True)


def table1(results: pd.DataFrame, metric: str = "map", baselines: Sequence[str] = ()) -> pd.DataFrame:
    """The paper's Table 1 layout: Mo./Cr./Mul. macro means per dataset, one row per system (notebook 04 §4)."""
    rows = results[(results.metric == metric) & (results.query_lang == "all")
                   & results.setting.isin(["mono", "cross", "multi"])]
    table = rows.pivot_table(index=["model", "training"], columns=["dataset", "setting"], values="value")
    table = table.reindex(columns=["mono", "cross", "multi"], level=1)
    return table.reindex([i for m in system_order(results, baselines) for i in table.index if i[0] == m])


def table2(results: pd.DataFrame, baselines: Sequence[str] = ()) -> pd.DataFrame:
    """The paper's Table 2 layout: rank distance (lower is better) with its bootstrap CI (notebook 04 §5)."""
    rows = results[(results.metric == "rank_distance") & (results.query_lang == "all")]
    table = rows.pivot_table(index=["model", "training"], columns="dataset", values=["value", "ci_low", "ci_high"])
    return table.reindex([i for m in system_order(results, baselines) for i in table.index if i[0] == m])


def per_language(results: pd.DataFrame, dataset: str, setting: str, metric: str = "map",
                 baselines: Sequence[str] = ()) -> pd.DataFrame:
    """Tables 3-8 layout: one row per system, one column per query language (notebooks 04 §6, 05 §1)."""
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


def heatmap_systems(results: pd.DataFrame, baselines: Sequence[str]) -> tuple[list[str], tuple[str, str] | None]:
    """The systems of the language-pair heatmaps (the first baseline, the X-X and the hybrid run)
    and the difference to draw (hybrid - X-X), chosen by their ``training`` (notebook 05 §3)."""
    by_training = results.drop_duplicates("model").set_index("model").training
    xx = next((m for m, t in by_training.items() if t == "X-X"), None)
    hy = next((m for m, t in by_training.items() if t == "hybrid"), None)
    first = next((b for b in baselines if b in by_training.index), None)
    models = [m for m in (first, xx, hy) if m is not None]
    return models, (xx, hy) if xx and hy else None


def write_tables(profile: str, baselines: Sequence[str] = ()) -> dict[str, pd.DataFrame]:
    """Table 1, Table 2 and per-language tables as CSV under results/tables/ (notebooks 04-05)."""
    results = read_results(profile)
    folder = paths.results_dir(profile) / "tables"
    tables = {"table1_map": table1(results, baselines=baselines),
              "table2_rank_distance": table2(results, baselines)}
    for dataset in results.dataset.unique():
        for setting in ("mono", "cross", "multi"):
            tables[f"{dataset}_{setting}_map_per_language"] = per_language(results, dataset, setting,
                                                                           baselines=baselines)
    for name, table in tables.items():
        atomic_write_csv(table.round(4), folder / f"{name}.csv", index=True)
    return tables


def make_figures(profile: str) -> list[str]:
    """Every figure of notebooks 01-05 from the files in ``results/``; returns the names written
    (notebook 05 §8, ``make figures``).

    No data is parsed, nothing is trained or encoded: each figure is redrawn from the table its
    notebook stored (a figure whose table is missing is skipped).
    """
    from . import figures as F
    from .config import load

    cfg = load(profile)
    base = cfg.baselines
    folder = paths.results_dir(profile)
    written = []

    def save(fig, name):
        outputs.save_figure(fig, name, profile)
        written.append(name)

    sources = ((outputs.LENGTHS_FILE, "01_lengths", F.plot_length_distributions),
               (outputs.TRAIN_LOGS_FILE, "02_loss_curves", F.plot_loss_curves),
               (outputs.MLM_LOG_FILE, "03_mlm_loss", F.plot_mlm_loss),
               (outputs.ADAPTER_LOGS_FILE, "03_task_loss", F.plot_loss_curves))
    for file, name, plot in sources:
        if (folder / file).is_file():
            save(plot(outputs.read_table(file, profile)), name)
    results = read_results(profile)
    for dataset in results.dataset.unique():
        save(F.plot_headline(results, dataset, base), f"04_headline_{dataset}")
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
    fig = F.plot_alpha_sweep(results, default_alpha=cfg.train.alpha)
    if fig is not None:
        save(fig, "05_alpha_sweep")
    write_tables(profile, base)
    return written


def results_markdown(profile: str = "quick") -> str:
    """The README's results block: Table 1 (mAP) and rank distance per system, from results/."""
    from .config import load

    results = read_results(profile)
    baselines = load(profile).baselines
    t1 = table1(results, baselines=baselines)
    t2 = table2(results, baselines)
    datasets = list(dict.fromkeys(c[0] for c in t1.columns))
    head = ["system", "training"] + [f"{d} {s}" for d in datasets for s in ("Mo.", "Cr.", "Mul.")] + \
        [f"{d} rank dist." for d in datasets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model, training in t1.index:
        cells = [model, training]
        cells += [_fmt(t1.loc[(model, training)].get((d, s))) for d in datasets for s in ("mono", "cross", "multi")]
        for d in datasets:
            value = t2["value"][d].get((model, training)) if (model, training) in t2.index else None
            cells.append("" if value is None or pd.isna(value) else f"{value:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value) -> str:
    return "" if value is None or pd.isna(value) else f"{value:.3f}"


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
