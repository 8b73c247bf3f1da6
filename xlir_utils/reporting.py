"""Paper-style tables and the figures of notebooks 04–05, from ``results/`` only.

``python -m xlir_utils.reporting [profile]`` (``make figures``) rebuilds every table and
figure from the result files, without training or encoding.
"""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from . import paths
from .io_utils import atomic_write_csv
from .plotting import LANG_ORDER, save_figure, use_style

EVAL_FILE = "evaluation.csv"  # tidy rows of every system (notebook 04, plus LIR from 05)
PER_QUERY_FILE = "per_query_multi.parquet"  # per-query multilingual AP and rank distance
LIR_FILE = "lir_evaluation.csv"  # Language Information Removal rows (notebook 05)
PROJECTION_FILE = "projection.csv"  # 2-D projection of parallel answers (notebook 05)
LENGTHS_FILE = "text_lengths.parquet"  # characters per question / candidate sentence (notebook 01)
TRAIN_LOGS_FILE = "train_logs.csv"  # loss per step of the full fine-tuning runs (notebook 02)
MLM_LOG_FILE = "mlm_log.csv"  # MLM loss per step of the head and each language adapter (notebook 03)
ADAPTER_LOGS_FILE = "adapter_train_logs.csv"  # loss per step of the task-adapter runs (notebook 03)

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


def read_results(profile: str) -> pd.DataFrame:
    """Every tidy result row of a profile (notebook 04's table plus notebook 05's LIR rows)."""
    folder = paths.results_dir(profile)
    frames = [pd.read_csv(folder / name) for name in (EVAL_FILE, LIR_FILE) if (folder / name).is_file()]
    if not frames:
        raise FileNotFoundError(f"No {EVAL_FILE} in {folder}: run notebook 04 in the {profile!r} profile first.")
    return pd.concat(frames, ignore_index=True)


def system_order(results: pd.DataFrame) -> list[str]:
    """Systems in a reading order: zero-shot, full fine-tuning, adapters, LIR."""
    def key(model: str):
        rank = 0 if model.startswith("e5") or "/" in model else 1 if model.startswith("full-") else \
            2 if model.startswith("adapters") else 3
        return rank, model
    return sorted(results.model.unique(), key=key)


def table1(results: pd.DataFrame, metric: str = "map") -> pd.DataFrame:
    """The paper's Table 1 layout: Mo./Cr./Mul. macro means per dataset, one row per system."""
    rows = results[(results.metric == metric) & (results.query_lang == "all")
                   & results.setting.isin(["mono", "cross", "multi"])]
    table = rows.pivot_table(index=["model", "training"], columns=["dataset", "setting"], values="value")
    table = table.reindex(columns=["mono", "cross", "multi"], level=1)
    return table.reindex([i for m in system_order(results) for i in table.index if i[0] == m])


def table2(results: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 2 layout: rank distance (lower is better) with its bootstrap CI."""
    rows = results[(results.metric == "rank_distance") & (results.query_lang == "all")]
    table = rows.pivot_table(index=["model", "training"], columns="dataset", values=["value", "ci_low", "ci_high"])
    return table.reindex([i for m in system_order(results) for i in table.index if i[0] == m])


def per_language(results: pd.DataFrame, dataset: str, setting: str, metric: str = "map") -> pd.DataFrame:
    """Tables 3–8 layout: one row per system, one column per query language."""
    rows = results[(results.dataset == dataset) & (results.setting == setting) & (results.metric == metric)
                   & (results.query_lang != "all") & results.cand_lang.isin(["all", "pool", *LANG_ORDER])]
    if setting == "mono":
        rows = rows[rows.cand_lang == rows.query_lang]
    table = rows.groupby(["model", "query_lang"]).value.mean().unstack()
    langs = [lang for lang in LANG_ORDER if lang in table.columns]
    return table.reindex(index=[m for m in system_order(results) if m in table.index], columns=langs)


def paper_table() -> pd.DataFrame:
    """The paper's numbers (XLM-R and LaBSE trained on in-house data; not our protocol)."""
    return PAPER.set_index(["model", "training"])


# ---------------------------------------------------------------- figures
def plot_headline(results: pd.DataFrame, dataset: str = "xquad-r"):
    """mAP per setting (bars with bootstrap CIs) and rank distance, one bar per system."""
    import matplotlib.pyplot as plt

    use_style()
    order = system_order(results[results.dataset == dataset])
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
    for ax, (setting, metric) in zip(axes, [("mono", "map"), ("cross", "map"), ("multi", "map"),
                                             ("multi", "rank_distance")]):
        sub = results[(results.dataset == dataset) & (results.setting == setting) & (results.metric == metric)
                      & (results.query_lang == "all")].set_index("model").reindex(order)
        err = np.vstack([sub.value - sub.ci_low, sub.ci_high - sub.value]) if sub.ci_low.notna().all() else None
        ax.barh(range(len(order)), sub.value, xerr=err, color=[_colour(m) for m in order], capsize=2)
        ax.set_yticks(range(len(order)), order if ax is axes[0] else [""] * len(order))
        ax.invert_yaxis()
        ax.set_title(f"{setting}: {'mAP' if metric == 'map' else 'rank distance (lower = better)'}")
    fig.suptitle(f"{dataset}: zero-shot retrieval (full-ranking mAP; 95% bootstrap CIs)", y=1.02)
    fig.tight_layout()
    return fig


def _colour(model: str) -> str:
    if model.startswith("full-"):
        return "#4c72b0"
    if model.startswith("adapters"):
        return "#55a868"
    if model.startswith("lir"):
        return "#c44e52"
    return "#8c8c8c"


def plot_pair_heatmaps(results: pd.DataFrame, models: list[str], dataset: str = "xquad-r", metric: str = "map",
                       diff: tuple[str, str] = ("full-X-X", "full-hybrid")):
    """Query-language × candidate-language heatmaps on one colour scale, plus ``diff[1] − diff[0]``."""
    import matplotlib.pyplot as plt

    use_style()
    mats = {}
    for m in models:
        rows = results[(results.model == m) & (results.dataset == dataset) & (results.metric == metric)
                       & (results.query_lang != "all") & (results.setting == "pair")]
        mat = rows.pivot_table(index="query_lang", columns="cand_lang", values="value")
        langs = [lang for lang in LANG_ORDER if lang in mat.index]
        mats[m] = mat.reindex(index=langs, columns=langs)
    show_diff = all(d in mats for d in diff)
    n = len(models) + show_diff
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n + 1, 3.4), squeeze=False, layout="constrained")
    vmin = min(np.nanmin(v.values) for v in mats.values())
    for i, (ax, (m, mat)) in enumerate(zip(axes[0], mats.items())):
        im = ax.imshow(mat.values, vmin=vmin, vmax=1, cmap="viridis")
        _ticks(ax, mat, ylabel=i == 0)
        ax.set_title(m)
    fig.colorbar(im, ax=axes[0, : len(models)].tolist(), shrink=0.8, label=metric)
    if show_diff:
        delta = mats[diff[1]] - mats[diff[0]]
        lim = np.nanmax(np.abs(delta.values))
        ax = axes[0, -1]
        im2 = ax.imshow(delta.values, vmin=-lim, vmax=lim, cmap="RdBu")
        _ticks(ax, delta, ylabel=False)
        ax.set_title(f"{diff[1]} − {diff[0]}")
        fig.colorbar(im2, ax=ax, shrink=0.8, label=f"Δ {metric}")
    return fig


def _ticks(ax, mat, ylabel: bool = True):
    ax.set_xticks(range(len(mat.columns)), mat.columns, fontsize=7)
    ax.set_yticks(range(len(mat.index)), mat.index, fontsize=7)
    ax.set_xlabel("candidate language")
    if ylabel:
        ax.set_ylabel("query language")


def plot_rank_distance_distributions(per_query: pd.DataFrame, dataset: str = "xquad-r"):
    """Per-query rank distance per system (box plots, log scale)."""
    import matplotlib.pyplot as plt

    use_style()
    sub = per_query[per_query.dataset == dataset]
    order = system_order(sub)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(order) + 1.2))
    ax.boxplot([sub.rank_distance[sub.model == m].clip(lower=1) for m in order], orientation="horizontal",
               tick_labels=order, showfliers=False, widths=0.6)
    ax.set_xscale("log")
    ax.invert_yaxis()
    floor = sub.n_relevant.min() - 1
    ax.axvline(floor, color="grey", ls=":", lw=1)
    ax.set_xlabel(f"rank distance per query (log; dotted: floor |R|−1 = {floor})")
    ax.set_title(f"{dataset}: spread of a question's parallel answers in the pooled ranking")
    fig.tight_layout()
    return fig


def plot_same_language_share(results: pd.DataFrame, dataset: str = "xquad-r"):
    """Share of each query's top 10 in its own language, against that language's pool share."""
    import matplotlib.pyplot as plt

    use_style()
    rows = results[(results.dataset == dataset) & (results.metric == "same_lang_top10") & (results.query_lang == "all")]
    base = results[(results.dataset == dataset) & (results.metric == "same_lang_pool_share") & (results.query_lang == "all")]
    order = [m for m in system_order(rows) if m in set(rows.model)]
    fig, ax = plt.subplots(figsize=(6.5, 0.4 * len(order) + 1.2))
    vals = rows.set_index("model").reindex(order).value
    ax.barh(range(len(order)), vals, color=[_colour(m) for m in order])
    ax.set_yticks(range(len(order)), order)
    ax.invert_yaxis()
    if len(base):
        ax.axvline(base.value.mean(), color="k", ls="--", lw=1, label="share of own language in the pool")
        ax.legend(frameon=False, loc="lower right")
    ax.set_xlabel("share of top-10 results in the query's own language")
    fig.tight_layout()
    return fig


def plot_projection(proj: pd.DataFrame):
    """2-D projection of parallel answers coloured by language, one panel per system."""
    import matplotlib.pyplot as plt

    use_style()
    models = list(dict.fromkeys(proj.model))
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 4), squeeze=False)
    cmap = plt.get_cmap("tab20")
    langs = [lang for lang in LANG_ORDER if lang in set(proj.lang)]
    for ax, m in zip(axes[0], models):
        sub = proj[proj.model == m]
        for i, lang in enumerate(langs):
            s = sub[sub.lang == lang]
            ax.scatter(s.x, s.y, s=6, color=cmap(i), label=lang, alpha=0.8)
        ax.set_title(m)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, -1].legend(frameon=False, markerscale=2, bbox_to_anchor=(1, 1), loc="upper left")
    fig.suptitle("answer sentences of the same questions in 11 languages (PCA to 2-D)")
    fig.tight_layout()
    return fig


def plot_alpha_sweep(results: pd.DataFrame, dataset: str = "xquad-r"):
    """mAP per setting and rank distance against alpha (runs full-hybrid-a*)."""
    import matplotlib.pyplot as plt

    use_style()
    rows = results[(results.dataset == dataset) & (results.query_lang == "all")
                   & results.model.str.match(r"full-hybrid-a")].copy()
    if rows.empty:
        return None
    rows["alpha"] = rows.model.str.extract(r"-a([0-9.]+)$")[0].astype(float)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for setting in ("mono", "cross", "multi"):
        s = rows[(rows.setting == setting) & (rows.metric == "map")].sort_values("alpha")
        axes[0].plot(s.alpha, s.value, marker="o", label=setting)
    s = rows[(rows.metric == "rank_distance")].sort_values("alpha")
    axes[1].plot(s.alpha, s.value, marker="o", color="k")
    axes[0].set(xlabel="alpha (share of X-X batches)", ylabel="mAP")
    axes[1].set(xlabel="alpha", ylabel="rank distance")
    axes[0].legend(frameon=False)
    fig.tight_layout()
    return fig


def write_tables(profile: str) -> dict[str, pd.DataFrame]:
    """Table 1, Table 2 and per-language tables as CSV under results/tables/."""
    results = read_results(profile)
    folder = paths.results_dir(profile) / "tables"
    tables = {"table1_map": table1(results), "table2_rank_distance": table2(results)}
    for dataset in results.dataset.unique():
        for setting in ("mono", "cross", "multi"):
            tables[f"{dataset}_{setting}_map_per_language"] = per_language(results, dataset, setting)
    for name, table in tables.items():
        atomic_write_csv(table.round(4), folder / f"{name}.csv", index=True)
    return tables


def make_figures(profile: str) -> list[str]:
    """Every figure of notebooks 01–05 from the files in ``results/``; returns the names written.

    No data is parsed, nothing is trained or encoded: each figure is redrawn from the table its
    notebook stored (a figure whose table is missing is skipped).
    """
    from .language_adapters import plot_mlm_loss
    from .plotting import plot_length_distributions
    from .training import plot_loss_curves

    folder = paths.results_dir(profile)
    written = []
    sources = ((LENGTHS_FILE, "01_lengths", plot_length_distributions),
               (TRAIN_LOGS_FILE, "02_loss_curves", plot_loss_curves),
               (MLM_LOG_FILE, "03_mlm_loss", plot_mlm_loss),
               (ADAPTER_LOGS_FILE, "03_task_loss", plot_loss_curves))
    for file, name, plot in sources:
        if (folder / file).is_file():
            table = pd.read_parquet(folder / file) if file.endswith(".parquet") else pd.read_csv(folder / file)
            save_figure(plot(table), name, profile)
            written.append(name)
    results = read_results(profile)
    for dataset in results.dataset.unique():
        save_figure(plot_headline(results, dataset), f"04_headline_{dataset}", profile)
        written.append(f"04_headline_{dataset}")
    models = [m for m in ("e5-small-offline", "full-X-X", "full-hybrid") if m in set(results.model)]
    if len(models) >= 2:
        save_figure(plot_pair_heatmaps(results, models), "05_language_pair_heatmaps", profile)
        written.append("05_language_pair_heatmaps")
    if "same_lang_top10" in set(results.metric):
        save_figure(plot_same_language_share(results), "05_same_language_top10", profile)
        written.append("05_same_language_top10")
    if (folder / PER_QUERY_FILE).is_file():
        save_figure(plot_rank_distance_distributions(pd.read_parquet(folder / PER_QUERY_FILE)),
                    "05_rank_distance_distributions", profile)
        written.append("05_rank_distance_distributions")
    if (folder / PROJECTION_FILE).is_file():
        save_figure(plot_projection(pd.read_csv(folder / PROJECTION_FILE)), "05_projection", profile)
        written.append("05_projection")
    fig = plot_alpha_sweep(results)
    if fig is not None:
        save_figure(fig, "05_alpha_sweep", profile)
        written.append("05_alpha_sweep")
    write_tables(profile)
    return written


def results_markdown(profile: str = "quick") -> str:
    """The README's results block: Table 1 (mAP) and rank distance per system, from results/."""
    results = read_results(profile)
    t1 = table1(results)
    t2 = table2(results)
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
