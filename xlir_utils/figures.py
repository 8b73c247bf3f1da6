"""Every figure of the kit, in one style (notebooks 01-05 and ``make figures``).

Each ``plot_*`` function draws from a table a notebook stored in ``results/`` and returns the
figure; :func:`xlir_utils.outputs.save_figure` writes it. Systems are ordered and coloured by
their kind (:mod:`xlir_utils.system_labels`), never by name patterns.
"""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .system_labels import system_colours, system_order, training_alpha

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "xlir",
    "pdf.fonttype": 42,
}
LANG_ORDER = ("en", "de", "es", "ar", "hi", "vi", "zh", "el", "ru", "th", "tr")


def use_style() -> None:
    """Apply the kit's matplotlib style."""
    plt.rcParams.update(STYLE)


def _langs_in(values) -> list[str]:
    present = set(values)
    return [lang for lang in LANG_ORDER if lang in present] + sorted(present - set(LANG_ORDER))


# ----------------------------------------------------------------------- notebook 01
def length_table(rsets) -> pd.DataFrame:
    """Character length of every question and candidate sentence (dataset, kind, lang, chars).

    Notebook 01 §4 stores it in ``results/`` so that ``make figures`` redraws ``01_lengths``.
    """
    frames = []
    for rset in rsets:
        frames.append(pd.DataFrame({"dataset": rset.name, "kind": "question", "lang": rset.queries.lang,
                                    "chars": rset.queries.text.str.len()}))
        frames.append(pd.DataFrame({"dataset": rset.name, "kind": "candidate sentence",
                                    "lang": rset.candidates.lang, "chars": rset.candidates.sentence.str.len()}))
    return pd.concat(frames, ignore_index=True)


def plot_length_distributions(lengths: pd.DataFrame):
    """Question and candidate-sentence lengths (characters) per language, per dataset (notebook 01 §4)."""
    use_style()
    names = list(dict.fromkeys(lengths.dataset))
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 2.6 * len(names)), squeeze=False, sharey="col")
    for r, name in enumerate(names):
        for c, kind in enumerate(("question", "candidate sentence")):
            ax = axes[r, c]
            sub = lengths[(lengths.dataset == name) & (lengths.kind == kind)]
            sns.boxplot(data=sub, x="lang", y="chars", order=_langs_in(sub.lang), ax=ax, showfliers=False,
                        width=0.6, color="#c7d4e8", log_scale=True)
            ax.set_title(f"{name}: {kind}s")
            ax.set_xlabel("")
            ax.set_ylabel("length (characters, log)")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------- notebooks 02, 03
def plot_loss_curves(logs: pd.DataFrame, smooth: int = 5):
    """Loss per step of each run in ``logs`` (``training.read_train_logs``), rolling mean
    (notebooks 02 §4, 03 §4)."""
    use_style()
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for run, log in logs.groupby("run", sort=False):
        ax.plot(log.step, log.loss.rolling(smooth, min_periods=1).mean(), label=run)
    ax.set_xlabel("step")
    ax.set_ylabel(f"InfoNCE loss (rolling mean of {smooth})")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def plot_mlm_loss(log: pd.DataFrame, smooth: int = 5):
    """MLM loss per step of each language adapter (rolling mean), the shared head's in grey (notebook 03 §3)."""
    use_style()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), gridspec_kw={"width_ratios": [1, 2]})
    head = log[log.phase == "head"]
    axes[0].plot(head.step, head.loss.rolling(smooth, min_periods=1).mean(), color="grey")
    axes[0].set_title("shared MLM head (base frozen)")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel(f"MLM loss (rolling mean of {smooth})")
    ad = log[log.phase == "adapter"]
    for lang in _langs_in(ad.lang):
        sub = ad[ad.lang == lang]
        axes[1].plot(sub.step, sub.loss.rolling(smooth, min_periods=1).mean(), label=lang)
    axes[1].set_title("language adapters (head frozen)")
    axes[1].set_xlabel("step")
    axes[1].legend(frameon=False, ncol=2, fontsize=7)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------- notebooks 04, 05
def plot_headline(results: pd.DataFrame, dataset: str = "xquad-r", baselines: Sequence[str] = ()):
    """mAP per setting (bars with bootstrap CIs) and rank distance, one bar per system (notebook 04 §6)."""
    use_style()
    sub_all = results[results.dataset == dataset]
    order = system_order(sub_all, baselines)
    colours = system_colours(sub_all, order)
    fig, axes = plt.subplots(1, 4, figsize=(12, 0.3 * len(order) + 1.8))
    for ax, (setting, metric) in zip(axes, [("mono", "map"), ("cross", "map"), ("multi", "map"),
                                             ("multi", "rank_distance")]):
        sub = sub_all[(sub_all.setting == setting) & (sub_all.metric == metric)
                      & (sub_all.query_lang == "all")].set_index("model").reindex(order)
        err = np.vstack([sub.value - sub.ci_low, sub.ci_high - sub.value]) if sub.ci_low.notna().all() else None
        ax.barh(range(len(order)), sub.value, xerr=err, color=colours, capsize=2)
        ax.set_yticks(range(len(order)), order if ax is axes[0] else [""] * len(order))
        ax.invert_yaxis()
        ax.set_title(f"{setting}: {'mAP' if metric == 'map' else 'rank distance (lower = better)'}")
    fig.suptitle(f"{dataset}: zero-shot retrieval (full-ranking mAP; 95% bootstrap CIs)", y=1.02)
    fig.tight_layout()
    return fig


def plot_pair_heatmaps(results: pd.DataFrame, models: list[str], dataset: str = "xquad-r", metric: str = "map",
                       diff: tuple[str, str] | None = None):
    """Query-language x candidate-language heatmaps on one colour scale, plus ``diff[1] - diff[0]``
    (notebook 05 §3)."""
    use_style()
    mats = {}
    for m in models:
        rows = results[(results.model == m) & (results.dataset == dataset) & (results.metric == metric)
                       & (results.query_lang != "all") & (results.setting == "pair")]
        mat = rows.pivot_table(index="query_lang", columns="cand_lang", values="value")
        langs = _langs_in(mat.index)
        mats[m] = mat.reindex(index=langs, columns=langs)
    show_diff = diff is not None and all(d in mats for d in diff)
    n = len(models) + show_diff
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n + 1, 3.4), squeeze=False, layout="constrained")
    vmin = min(np.nanmin(v.values) for v in mats.values())
    for i, (ax, (m, mat)) in enumerate(zip(axes[0], mats.items())):
        sns.heatmap(mat, ax=ax, vmin=vmin, vmax=1, cmap="viridis", square=True, cbar=i == len(models) - 1,
                    cbar_kws={"label": metric, "shrink": 0.8})
        _heatmap_labels(ax, ylabel=i == 0)
        ax.set_title(m)
    if show_diff:
        delta = mats[diff[1]] - mats[diff[0]]
        lim = float(np.nanmax(np.abs(delta.values)))
        ax = axes[0, -1]
        sns.heatmap(delta, ax=ax, vmin=-lim, vmax=lim, cmap="RdBu", square=True,
                    cbar_kws={"label": f"Δ {metric}", "shrink": 0.8})
        _heatmap_labels(ax, ylabel=False)
        ax.set_title(f"{diff[1]} − {diff[0]}")
    return fig


def _heatmap_labels(ax, ylabel: bool = True):
    ax.tick_params(labelsize=7)
    ax.set_xlabel("candidate language")
    ax.set_ylabel("query language" if ylabel else "")


def plot_rank_distance_distributions(per_query: pd.DataFrame, dataset: str = "xquad-r",
                                     baselines: Sequence[str] = ()):
    """Per-query rank distance per system, box plots on a log scale (notebook 05 §2)."""
    use_style()
    sub = per_query[per_query.dataset == dataset].copy()
    order = system_order(sub, baselines)
    sub["rank distance"] = sub.rank_distance.clip(lower=1)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(order) + 1.2))
    sns.boxplot(data=sub, y="model", x="rank distance", order=order, hue="model", hue_order=order,
                palette=system_colours(sub, order), showfliers=False, width=0.6, log_scale=True, ax=ax,
                legend=False)
    floor = sub.n_relevant.min() - 1
    ax.axvline(floor, color="grey", ls=":", lw=1)
    ax.set_ylabel("")
    ax.set_xlabel(f"rank distance per query (log; dotted: floor |R|−1 = {floor})")
    ax.set_title(f"{dataset}: spread of a question's parallel answers in the pooled ranking")
    fig.tight_layout()
    return fig


def plot_same_language_share(results: pd.DataFrame, dataset: str = "xquad-r", baselines: Sequence[str] = ()):
    """Share of each query's top 10 in its own language, against that language's pool share (notebook 05 §4)."""
    use_style()
    rows = results[(results.dataset == dataset) & (results.metric == "same_lang_top10") & (results.query_lang == "all")]
    base = results[(results.dataset == dataset) & (results.metric == "same_lang_pool_share")
                   & (results.query_lang == "all")]
    order = system_order(rows, baselines)
    fig, ax = plt.subplots(figsize=(6.5, 0.4 * len(order) + 1.2))
    vals = rows.set_index("model").reindex(order).value
    ax.barh(range(len(order)), vals, color=system_colours(rows, order))
    ax.set_yticks(range(len(order)), order)
    ax.invert_yaxis()
    if len(base):
        ax.axvline(base.value.mean(), color="k", ls="--", lw=1, label="share of own language in the pool")
        ax.legend(frameon=False, loc="lower right")
    ax.set_xlabel("share of top-10 results in the query's own language")
    fig.tight_layout()
    return fig


def plot_projection(proj: pd.DataFrame):
    """2-D projection of parallel answers coloured by language, one panel per system (notebook 05 §6)."""
    use_style()
    models = list(dict.fromkeys(proj.model))
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 4), squeeze=False)
    cmap = plt.get_cmap("tab20")
    langs = _langs_in(proj.lang)
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


def plot_alpha_sweep(results: pd.DataFrame, dataset: str = "xquad-r", default_alpha: float = 0.5):
    """mAP per setting and rank distance against α, over the full fine-tuning runs (notebook 05 §7);
    None when fewer than three α values were run."""
    use_style()
    rows = results[(results.dataset == dataset) & (results.query_lang == "all")].copy()
    rows["alpha"] = rows.training.map(lambda t: training_alpha(t, default_alpha))
    rows = rows[rows.alpha.notna()]
    if rows.alpha.nunique() < 3:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for setting in ("mono", "cross", "multi"):
        s = rows[(rows.setting == setting) & (rows.metric == "map")].sort_values("alpha")
        axes[0].errorbar(s.alpha, s.value, yerr=[s.value - s.ci_low, s.ci_high - s.value], marker="o",
                         capsize=2, label=setting)
    s = rows[(rows.metric == "rank_distance")].sort_values("alpha")
    axes[1].errorbar(s.alpha, s.value, yerr=[s.value - s.ci_low, s.ci_high - s.value], marker="o", color="k",
                     capsize=2)
    axes[0].set(xlabel="α (share of X-X batches)", ylabel="mAP")
    axes[1].set(xlabel="α", ylabel="rank distance")
    axes[0].legend(frameon=False)
    fig.tight_layout()
    return fig
