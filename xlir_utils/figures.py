"""Every figure of the kit, in one style (notebooks 01-05 and ``make figures``).

Each ``plot_*`` function draws from a table a notebook stored in ``results/`` and returns the
figure; :func:`xlir_utils.outputs.save_figure` writes it. Systems are ordered and coloured by
their columns (:mod:`xlir_utils.systems.labels`), never by name patterns.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .languages import LANG_ORDER, lang_colour
from .palettes import SAMPLING_COLOURS, setting_colour
from .systems.labels import GROUP_COLOURS, display_group, mean_over_seeds, system_colours, system_order

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
def plot_loss_curves(logs: pd.DataFrame, smooth: int = 5, colours: Mapping[str, str] | None = None):
    """Loss per step of each run in ``logs`` (``training.read_train_logs``), rolling mean
    (notebooks 02 §5, 03 §4); ``colours``: a colour per system (``system`` column), as
    :func:`xlir_utils.reporting.sampling_loss_curves` gives the samplings'."""
    use_style()
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for run, log in logs.groupby("run", sort=False):
        system = log.system.iat[0] if "system" in log.columns else run
        colour = (colours or {}).get(system)
        ax.plot(log.step, log.loss.rolling(smooth, min_periods=1).mean(), label=run, color=colour)
    ax.set_xlabel("step")
    ax.set_ylabel(f"InfoNCE loss (rolling mean of {smooth})")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def plot_mlm_loss(log: pd.DataFrame, heldout: pd.DataFrame | None = None, smooth: int = 5):
    """The chosen MLM head's held-out loss per epoch, each language adapter's training loss
    (rolling mean), and held-out MLM loss per language before and after its adapter (notebook 03 §3).
    When no adapter was trained, the second panel shows the head's held-out loss per language."""
    use_style()
    panels = 3 if heldout is not None and "loss_after" in heldout.columns else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels + 1, 3.3),
                             gridspec_kw={"width_ratios": [1, 1.4, 1.4][:panels]})
    head = log[log.phase == "head"]
    axes[0].plot(head.step, head.loss, marker="o", color="grey")
    axes[0].set(title="shared MLM head (cached states)", xlabel="epoch", ylabel="held-out MLM loss (nats)")
    ad = log[log.phase == "adapter"]
    if not len(ad) and heldout is not None and "head_loss" in heldout.columns:
        h = heldout.set_index("lang").reindex(_langs_in(heldout.lang))
        axes[1].bar(range(len(h)), h.head_loss, color=[lang_colour(x) for x in h.index])
        axes[1].set_xticks(range(len(h)), h.index)
        axes[1].set(title="head's held-out loss per language: no language adapter trained", ylabel="nats")
        fig.tight_layout()
        return fig
    for lang in _langs_in(ad.lang):
        sub = ad[ad.lang == lang]
        axes[1].plot(sub.step, sub.loss.rolling(smooth, min_periods=1).mean(), label=lang, color=lang_colour(lang))
    axes[1].set(title="language adapters (head frozen)", xlabel="step", ylabel=f"MLM loss (rolling mean of {smooth})")
    if len(ad):
        axes[1].legend(frameon=False, ncol=2, fontsize=7)
    if panels == 3:
        h = heldout.set_index("lang").reindex(_langs_in(heldout.lang))
        x = np.arange(len(h))
        bars = ((-0.27, "loss_before", "base (no adapter)", "0.8"), (0, "loss_after", "adapter", "0.2"),
                (0.27, "loss_after_without_invertible", "adapter, invertible dropped", "0.5"))
        for offset, col, label, shade in bars:
            axes[2].bar(x + offset, h[col], width=0.27, label=label, color=shade)
        axes[2].set_xticks(x, h.index)
        values = h[["loss_before", "loss_after", "loss_after_without_invertible"]].to_numpy(float)
        low, high = np.nanmin(values), np.nanmax(values)
        axes[2].set_ylim(max(0.0, low - 0.15 * (high - low or 1)), high + 0.1 * (high - low or 1))
        axes[2].set(title="held-out MLM loss per language", ylabel="nats (axis zoomed)")
        axes[2].legend(frameon=False, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------- notebooks 04, 05
def _systems_frame(seed_means: pd.DataFrame) -> pd.DataFrame:
    """seed means with the system as ``model`` (what :func:`system_order` reads)."""
    return seed_means.assign(model=seed_means.system)


HEADLINE_PANELS = (("mono", "map"), ("cross", "map"), ("multi", "map"), ("multi", "rank_distance"))


def _zoomed(ax, *drawn: np.ndarray, zero: bool = False) -> None:
    """Limit ``ax``'s x-axis to every value drawn (intervals, means, seeds; and 0 for
    differences), with a margin."""
    values = np.concatenate([np.asarray(v, float).ravel() for v in drawn] + [np.zeros(1 if zero else 0)])
    values = values[np.isfinite(values)]
    if len(values):
        lo, hi = values.min(), values.max()
        pad = 0.08 * (hi - lo or abs(hi) or 1.0)
        ax.set_xlim(lo - pad, hi + pad)
    ax.xaxis.set_major_locator(plt.MaxNLocator(5))


def _dot_rows(ax, names: Sequence[str], groups: Sequence[str], centre, low, high, *, labelled: bool,
              extra: np.ndarray | None = None, zero: bool = False) -> None:
    """One row per name: a dot at ``centre`` and a line from ``low`` to ``high`` in its group's
    colour, thin lines between groups, the axis zoomed to all of it (and ``extra``; 0 with ``zero``)."""
    for i in range(len(names)):
        colour = GROUP_COLOURS[groups[i]]
        ax.plot([low.iat[i], high.iat[i]], [i, i], color=colour, lw=2, alpha=0.6, solid_capstyle="butt")
        ax.plot(centre.iat[i], i, "o", color=colour, ms=4.5)
        if i and groups[i] != groups[i - 1]:
            ax.axhline(i - 0.5, color="0.8", lw=0.6)
    if zero:
        ax.axvline(0, color="k", lw=0.8)
    # (a percentile interval need not be centred on the mean; on a tiny set it can even miss it)
    _zoomed(ax, low, high, centre, np.zeros(0) if extra is None else extra, zero=zero)
    ax.set_yticks(range(len(names)), names if labelled else [""] * len(names), fontsize=7)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.grid(axis="x", color="0.92", lw=0.6)


def paired_against(comparisons: pd.DataFrame, reference: str, dataset: str) -> pd.DataFrame:
    """Each system minus ``reference``, from the paired comparisons (a, b, delta, ci_low, ci_high;
    :func:`xlir_utils.seed_statistics.seed_summary`) of ``dataset``: rows ``a - reference`` as
    they are, rows ``reference - b`` turned round (notebook 04 §6)."""
    rows = comparisons[comparisons.dataset == dataset]
    ahead = rows[rows.b == reference].assign(system=lambda f: f.a)
    turned = rows[rows.a == reference]
    behind = turned.assign(system=turned.b, delta=-turned.delta, ci_low=-turned.ci_high, ci_high=-turned.ci_low)
    both = pd.concat([ahead, behind], ignore_index=True)  # a pair compared both ways is drawn once
    return both.drop_duplicates(["system", "metric", "setting"])[["system", "metric", "setting", "delta", "ci_low",
                                                                   "ci_high"]]


def plot_headline(seed_means: pd.DataFrame, results: pd.DataFrame | None = None, dataset: str = "xquad-r",
                  baselines: Sequence[str] = (), comparisons: pd.DataFrame | None = None,
                  reference: str | None = None):
    """The headline (notebook 04 §6). Top row: per system, the seed mean (dot) with its 95 %
    interval over queries and seeds (line) and every seed (black ticks, with ``results``), mono /
    cross / multi mAP and rank distance, each axis zoomed to what it draws, systems grouped by family (colour, thin
    lines between groups). Bottom row, with ``comparisons`` and ``reference`` (e.g. ``full-hybrid``):
    each system minus the reference, paired over queries and seeds, with its interval and 0 marked."""
    use_style()
    sm = _systems_frame(seed_means[seed_means.dataset == dataset])
    order = system_order(sm, baselines)
    first = sm.drop_duplicates("system").set_index("system")
    groups = [display_group(first.loc[m]) for m in order]
    diffs = paired_against(comparisons, reference, dataset) if comparisons is not None and reference else None
    if diffs is not None and diffs.empty:
        diffs = None
    n_rows = 2 if diffs is not None else 1
    diff_order = [m for m in order if diffs is not None and m in set(diffs.system)]
    height = 0.26 * len(order) + 1.4 + (0.26 * len(diff_order) + 1.2 if diffs is not None else 0)
    fig, axes = plt.subplots(n_rows, 4, figsize=(13, height), squeeze=False,
                             gridspec_kw={"height_ratios": [len(order) + 2, len(diff_order) + 3][:n_rows]})
    for ax, (setting, metric) in zip(axes[0], HEADLINE_PANELS):
        sub = sm[(sm.setting == setting) & (sm.metric == metric)].set_index("system").reindex(order)
        seeds = None
        if results is not None:
            runs = results[(results.dataset == dataset) & (results.setting == setting) & (results.metric == metric)
                           & (results.query_lang == "all") & results.system.isin(order)]
            ax.scatter(runs.value, runs.system.map({m: i for i, m in enumerate(order)}), marker="|", s=30,
                       color="k", lw=0.8, zorder=3, label="one seed")
            seeds = runs.value.to_numpy(float)
        _dot_rows(ax, order, groups, sub["mean"], sub.ci_low, sub.ci_high, labelled=ax is axes[0][0], extra=seeds)
        ax.set_title(f"{setting}: {'mAP' if metric == 'map' else 'rank distance (lower = better)'}")
    present = list(dict.fromkeys(groups))
    handles = [plt.Line2D([], [], color=GROUP_COLOURS[g], marker="o", lw=2, label=g) for g in present]
    if results is not None:
        handles.append(plt.Line2D([], [], color="k", marker="|", lw=0, ms=8, label="one seed"))
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False, fontsize=8,
               bbox_to_anchor=(0.5, 1.0))
    if diffs is not None:
        dgroups = [groups[order.index(m)] for m in diff_order]
        for ax, (setting, metric) in zip(axes[1], HEADLINE_PANELS):
            sub = diffs[(diffs.setting == setting) & (diffs.metric == metric)].set_index("system").reindex(diff_order)
            _dot_rows(ax, diff_order, dgroups, sub.delta, sub.ci_low, sub.ci_high, labelled=ax is axes[1][0], zero=True)
            what = "mAP" if metric == "map" else "rank distance (lower = better)"
            ax.set_title(f"{setting} {what}:\nsystem − {reference}", fontsize=9)
    fig.suptitle(f"{dataset}: full-ranking mAP and rank distance, seed means with 95% intervals over queries and "
                 "seeds" + ("; below, paired differences" if diffs is not None else ""), y=1.03)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


def plot_tatoeba(results: pd.DataFrame, baselines: Sequence[str] = (), direction: str = "en→xx"):
    """Tatoeba accuracy per language (seed means), one row per system, the mean in the last column
    (notebook 04 §8)."""
    use_style()
    rows = mean_over_seeds(results[(results.dataset == "tatoeba") & (results.setting == direction)
                                   & (results.metric == "accuracy")])
    side = "cand_lang" if direction == "en→xx" else "query_lang"
    per = rows[rows[side] != "all"].pivot_table(index="model", columns=side, values="value")
    per = per.reindex(columns=_langs_in(per.columns))
    per["mean"] = rows[rows[side] == "all"].set_index("model").value
    order = system_order(rows, baselines)
    per = per.reindex([m for m in order if m in per.index])
    fig, ax = plt.subplots(figsize=(0.55 * per.shape[1] + 3.5, 0.32 * len(per) + 1.4))
    values = (per * 100).to_numpy(float)
    values = values[np.isfinite(values)]
    low, high = (values.min(), values.max()) if len(values) else (0.0, 100.0)  # the scale spans the data, in 5s
    sns.heatmap(per * 100, annot=True, fmt=".0f", cmap="viridis", vmin=5 * np.floor(low / 5),
                vmax=max(5 * np.ceil(high / 5), 5 * np.floor(low / 5) + 5), ax=ax, annot_kws={"size": 6},
                cbar_kws={"label": "accuracy (%)"})
    ax.set(xlabel="", ylabel="", title=f"Tatoeba accuracy ({direction}: English queries, the other language's index)"
           if direction == "en→xx" else f"Tatoeba accuracy ({direction})")
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def plot_pair_heatmaps(results: pd.DataFrame, models: list[str], dataset: str = "xquad-r", metric: str = "map",
                       diff: tuple[str, str] | None = None):
    """Query-language x candidate-language heatmaps (seed means) on one colour scale, plus
    ``diff[1] - diff[0]`` (notebook 05 §3); ``models`` are system names."""
    use_style()
    results = mean_over_seeds(results)
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
    vmax = max(np.nanmax(v.values) for v in mats.values())
    for i, (ax, (m, mat)) in enumerate(zip(axes[0], mats.items())):
        sns.heatmap(mat, ax=ax, vmin=vmin, vmax=vmax, cmap="viridis", square=True, cbar=i == len(models) - 1,
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
    """Per-query rank distance per system (every seed's queries), box plots on a log scale (notebook 05 §2)."""
    use_style()
    sub = per_query[per_query.dataset == dataset].copy()
    if "system" in sub.columns:
        sub["model"] = sub.system
    order = system_order(sub, baselines)
    sub["rank distance"] = sub.rank_distance.clip(lower=1)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(order) + 1.2))
    sns.boxplot(data=sub, y="model", x="rank distance", order=order, hue="model", hue_order=order,
                palette=system_colours(sub, order), showfliers=False, width=0.6, log_scale=True, ax=ax,
                legend=False)
    floor = sub.n_relevant.min() - 1
    ax.axvline(floor, color="grey", ls=":", lw=1)
    _group_legend(ax, sub, order)
    ax.set_ylabel("")
    ax.set_xlabel(f"rank distance per query (log; dotted: floor |R|−1 = {floor})")
    ax.set_title(f"{dataset}: spread of a question's parallel answers in the pooled ranking")
    fig.tight_layout()
    return fig


def plot_same_language_share(results: pd.DataFrame, dataset: str = "xquad-r", baselines: Sequence[str] = ()):
    """Share of each query's top 10 in its own language (seed means), against that language's pool
    share (notebook 05 §4)."""
    use_style()
    results = mean_over_seeds(results)
    rows = results[(results.dataset == dataset) & (results.metric == "same_lang_top10") & (results.query_lang == "all")]
    base = results[(results.dataset == dataset) & (results.metric == "same_lang_pool_share")
                   & (results.query_lang == "all")]
    order = system_order(rows, baselines)
    fig, ax = plt.subplots(figsize=(6.5, 0.4 * len(order) + 1.2))
    vals = rows.set_index("model").reindex(order).value
    ax.barh(range(len(order)), vals, color=system_colours(rows, order))
    ax.set_yticks(range(len(order)), order)
    ax.invert_yaxis()
    handles = _group_handles(rows, order)
    if len(base):
        handles.append(ax.axvline(base.value.mean(), color="k", ls="--", lw=1,
                                  label="share of own language in the pool"))
    ax.legend(handles=handles, frameon=False, loc="lower right", fontsize=7)
    ax.set_xlabel("share of top-10 results in the query's own language")
    fig.tight_layout()
    return fig


def _group_handles(rows: pd.DataFrame, order: Sequence[str]) -> list:
    """Legend entries for the system groups (colours of :data:`GROUP_COLOURS`) among ``order``."""
    first = rows.drop_duplicates("model").set_index("model")
    groups = list(dict.fromkeys(display_group(first.loc[m]) for m in order if m in first.index))
    return [plt.Rectangle((0, 0), 1, 1, color=GROUP_COLOURS[g], label=g) for g in groups]


def _group_legend(ax, rows: pd.DataFrame, order: Sequence[str]) -> None:
    ax.legend(handles=_group_handles(rows, order), frameon=False, fontsize=7, loc="lower right")


def plot_projection(proj: pd.DataFrame):
    """2-D projection of parallel answers coloured by language, one panel per system (notebook 05 §6)."""
    use_style()
    models = list(dict.fromkeys(proj.model))
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 4), squeeze=False)
    langs = _langs_in(proj.lang)
    for ax, m in zip(axes[0], models):
        sub = proj[proj.model == m]
        for lang in langs:
            s = sub[sub.lang == lang]
            ax.scatter(s.x, s.y, s=6, color=lang_colour(lang), label=lang, alpha=0.8)
        ax.set_title(m)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, -1].legend(frameon=False, markerscale=2, bbox_to_anchor=(1, 1), loc="upper left")
    fig.suptitle("answer sentences of the same questions in 11 languages (PCA to 2-D)")
    fig.tight_layout()
    return fig


def plot_alpha_sweep(seed_means: pd.DataFrame, dataset: str = "xquad-r"):
    """Seed-mean mAP per setting and rank distance against α over the full fine-tuning runs, with
    two-level bootstrap intervals (notebook 05 §7); None when fewer than three α values were run."""
    use_style()
    rows = seed_means[(seed_means.dataset == dataset) & (seed_means.family == "full") & seed_means.post_hoc.isna()]
    if rows.alpha.nunique() < 3:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.2))
    for setting in ("mono", "cross", "multi"):
        s = rows[(rows.setting == setting) & (rows.metric == "map")].sort_values("alpha")
        axes[0].errorbar(s.alpha, s["mean"], yerr=_yerr(s), marker="o", capsize=2, label=setting,
                         color=setting_colour(setting))
    s = rows[rows.metric == "rank_distance"].sort_values("alpha")
    axes[1].errorbar(s.alpha, s["mean"], yerr=_yerr(s), marker="o", color=setting_colour("multi"), capsize=2)
    n = int(rows.n_seeds.min())
    axes[0].set(xlabel="α (share of X-X batches; 0 = X-Y, 1 = X-X)", ylabel="mAP",
                title=f"{dataset}: mAP ({n} seed{'s' if n > 1 else ''} per α)")
    axes[1].set(xlabel="α", ylabel="rank distance", title="language bias (lower = better)")
    axes[0].legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    fig.tight_layout()
    return fig


def _yerr(rows: pd.DataFrame) -> np.ndarray:
    return np.clip(np.vstack([rows["mean"] - rows.ci_low, rows.ci_high - rows["mean"]]), 0, None)


RECIPE_SCALE = 0.02  # the least span of S a recipe-study colour scale shows


def plot_temperature_gap(gap: pd.DataFrame, chosen: dict):
    """Hybrid − X-X on dev against the temperature τ (:func:`xlir_utils.recipe_study.temperature_gap`),
    one line per setting and *S* (notebook 02 §4)."""
    use_style()
    fig, ax = plt.subplots(figsize=(4.8, 3.0))
    for col in ("mono", "cross", "multi", "S"):
        ax.plot(gap.index, gap[col], marker="o", label=f"{col} mAP" if col != "S" else "S (their mean)",
                color=setting_colour(col) if col != "S" else "0.6", ls="-" if col != "S" else "--")
    ax.axhline(0, color="k", lw=0.8)
    ax.axvline(chosen["temperature"], color="grey", ls=":", lw=1, label=f"chosen τ = {chosen['temperature']:g}")
    ax.set(xscale="log", xlabel="temperature τ", ylabel="hybrid − X-X (mlqa-r-dev)",
           title=f"lr {chosen['lr']:g}, step {chosen['steps']}, one seed")
    ax.set_xticks(list(gap.index), [f"{t:g}" for t in gap.index])
    ax.minorticks_off()
    ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def plot_recipe_study(grid: pd.DataFrame, chosen: dict):
    """The recipe study (notebook 02 §4): mean dev score *S* over the samplings per (τ, lr) at its
    best step, and the dev curves of the chosen (τ, lr) per sampling."""
    use_style()
    a = grid[grid.stage == "A"]
    best = a.groupby(["temperature", "lr", "step"]).S.mean().groupby(["temperature", "lr"]).max().unstack()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [1, 1.3]})
    # the colour scale spans at least RECIPE_SCALE of S around the data, so that differences
    # smaller than one seed's noise do not look like the whole range
    low, high = float(np.nanmin(best.values)), float(np.nanmax(best.values))
    pad = max(0.0, RECIPE_SCALE - (high - low)) / 2
    sns.heatmap(best, annot=True, fmt=".3f", cmap="Blues", vmin=low - pad, vmax=high + pad, ax=axes[0],
                cbar_kws={"label": f"mean dev S (scale spans ≥ {RECIPE_SCALE:g})"})
    axes[0].set(xlabel="learning rate", ylabel="temperature τ", title="stage A: dev S at the best step")
    sel = a[(a.temperature == chosen["temperature"]) & (a.lr == chosen["lr"])]
    for sampling, g in sel.groupby("sampling"):
        g = g.sort_values("step")
        axes[1].plot(g.step, g.S, marker="o", label=sampling, color=SAMPLING_COLOURS.get(sampling))
    axes[1].axvline(chosen["steps"], color="grey", ls=":", lw=1, label=f"chosen: {chosen['steps']} steps")
    axes[1].set(xlabel="step", ylabel="dev S (mean of Mo./Cr./Mul. mAP)",
                title=f"τ = {chosen['temperature']:g}, lr = {chosen['lr']:g} (mlqa-r-dev)")
    axes[1].legend(frameon=False)
    fig.tight_layout()
    return fig
