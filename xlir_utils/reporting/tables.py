"""Paper-style tables from ``results/`` only (notebooks 04-05, ``make figures``).

Headline tables are **seed means** (:mod:`xlir_utils.seed_statistics`: the mean over a system's
training seeds, with a 95 % interval over queries and seeds); per-language tables average the
seeds. Rows are systems, described from their columns (:func:`xlir_utils.systems.labels.describe`).
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .. import outputs, paths
from ..languages import LANG_ORDER
from ..systems.labels import describe_frame, mean_over_seeds, system_order


def read_results(profile: str, *, with_post_hoc: bool = True) -> pd.DataFrame:
    """Every tidy result row of a profile: notebook 04's table, plus notebook 05's post-hoc rows
    (LIR, LEACE) unless ``with_post_hoc=False`` (notebook 04 shows only what it computed; notebook
    05 and ``make figures`` join them in)."""
    return _read(profile, outputs.EVAL_FILE, outputs.POST_HOC_FILE if with_post_hoc else None)


def read_seed_means(profile: str, *, with_post_hoc: bool = True) -> pd.DataFrame:
    """Every system's seed means (notebook 04), plus the post-hoc systems' (LIR, LEACE; notebook 05)
    unless ``with_post_hoc=False``."""
    return _read(profile, outputs.SEED_MEANS_FILE, outputs.POST_HOC_SEED_MEANS_FILE if with_post_hoc else None)


def _read(profile: str, first: str, second: str | None) -> pd.DataFrame:
    folder = paths.results_dir(profile)
    if not (folder / first).is_file():
        raise FileNotFoundError(f"No {first} in {folder}: run notebook 04 in the {profile!r} profile first.")
    frames = [outputs.read_table(name, profile) for name in (first, second) if name and (folder / name).is_file()]
    return pd.concat(frames, ignore_index=True)


def _described(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with each system's ``description`` (the index of the tables beside its name)."""
    return rows.assign(description=describe_frame(rows))


def _ordered(table: pd.DataFrame, frame: pd.DataFrame, baselines) -> pd.DataFrame:
    order = system_order(frame.assign(model=frame.system), baselines)
    return table.reindex([i for m in order for i in table.index if i[0] == m])


def table1(seed_means: pd.DataFrame, metric: str = "map", baselines: Sequence[str] = ()) -> pd.DataFrame:
    """The paper's Table 1 layout: Mo./Cr./Mul. macro means per dataset, one row per system, the
    mean over its seeds (notebook 04 §4)."""
    rows = _described(seed_means[(seed_means.metric == metric) & seed_means.setting.isin(["mono", "cross", "multi"])])
    table = rows.pivot_table(index=["system", "description"], columns=["dataset", "setting"], values="mean")
    table = table.reindex(columns=["mono", "cross", "multi"], level=1)
    return _ordered(table, rows, baselines)


def table1_with_intervals(seed_means: pd.DataFrame, dataset: str, metric: str = "map",
                          baselines: Sequence[str] = ()) -> pd.DataFrame:
    """Table 1 for one dataset as text: ``mean [low, high]`` per setting, the seeds' spread (sd)
    and the number of seeds (notebooks 04 §4, 05 §5)."""
    rows = _described(seed_means[(seed_means.dataset == dataset) & (seed_means.metric == metric)])
    cell = rows.assign(text=[f"{m:.3f} [{lo:.3f}, {hi:.3f}]" + (f" sd {sd:.3f}" if sd == sd else "")
                             for m, lo, hi, sd in zip(rows["mean"], rows.ci_low, rows.ci_high, rows.sd)])
    table = cell.pivot_table(index=["system", "description"], columns="setting", values="text", aggfunc="first")
    table = table.reindex(columns=[s for s in ("mono", "cross", "multi") if s in table.columns])
    table["seeds"] = cell.groupby(["system", "description"]).n_seeds.max()
    return _ordered(table, rows, baselines)


def table2(seed_means: pd.DataFrame, baselines: Sequence[str] = ()) -> pd.DataFrame:
    """The paper's Table 2 layout: rank distance (lower is better), seed mean and its interval
    (notebook 04 §5)."""
    rows = _described(seed_means[seed_means.metric == "rank_distance"])
    table = rows.pivot_table(index=["system", "description"], columns="dataset", values=["mean", "ci_low", "ci_high"])
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
        rows = _described(seed_means[(seed_means.dataset == dataset) & (seed_means.metric == metric)
                                     & (seed_means.setting == setting)])
        if len(rows):
            out[col] = rows.set_index(["system", "description"])["mean"] * 100
    table = pd.DataFrame(out)
    if table.empty:
        return table
    return _ordered(table, seed_means[seed_means.system.isin(table.index.get_level_values(0))], baselines)


def write_tables(profile: str, baselines: Sequence[str] = ()) -> dict[str, pd.DataFrame]:
    """Table 1, Table 2 and per-language tables as CSV under results/tables/ (notebooks 04-05)."""
    results, seed_means = read_results(profile), read_seed_means(profile)
    tables = {"table1_map": table1(seed_means, baselines=baselines),
              "table2_rank_distance": table2(seed_means, baselines),
              "xtreme_r_retrieval": xtreme_r_table(seed_means, baselines)}
    for dataset in [d for d in results.dataset.unique() if d != "tatoeba"]:
        tables[f"{dataset}_table1_with_intervals"] = table1_with_intervals(seed_means, dataset, baselines=baselines)
        for setting in ("mono", "cross", "multi"):
            tables[f"{dataset}_{setting}_map_per_language"] = per_language(results, dataset, setting,
                                                                           baselines=baselines)
    for name, table in tables.items():
        outputs.save_table(table.round(4), f"{outputs.TABLES_FOLDER}/{name}.csv", profile, index=True)
    return tables


def first_seed_logs(logs: pd.DataFrame, systems: Sequence[str] | None = None) -> pd.DataFrame:
    """The training logs of the first seed (``seed`` column), of ``systems`` only if given (``system``
    column): what notebooks 02 §6 and 03 §4 plot."""
    if "seed" in logs.columns:
        logs = logs[logs.seed == logs.seed.min()]
    if systems is not None and "system" in logs.columns:
        logs = logs[logs.system.isin(systems)]
    return logs
