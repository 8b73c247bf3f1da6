"""Seed means and intervals that account for both queries and seeds (notebooks 04 §4, 05 §5).

A *system* (``full-hybrid``) is trained once per seed (``full-hybrid-s13``, ``-s14``, ...).
Its headline number is the mean over its seeds. Its 95 % interval comes from a two-level
bootstrap:

1. resample the queries within each query language (one stream per dataset, shared by every
   system, so comparisons are paired over queries), and recompute every run's macro mean;
2. resample the system's seeds with replacement and average those runs' values (a stream of its
   own per system and dataset, keyed by their names: adding or removing another system leaves
   every other interval and comparison as it was).

The percentile interval of (2) over 1,000 draws covers both sources of variation. A difference
between two systems (hybrid - X-X) uses the same query resample for both and independent seed
resamples for each; its two-sided bootstrap p-value is 2 x the share of draws on the far side of
0. With three seeds the seed level is coarse; the seed spread (sd, min, max) is reported beside it.
"""
from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import metrics as M

# LAReQA matrices have one column per candidate language, then the pool ("multi"); a Tatoeba
# direction has one column of per-query correctness ("all").
SETTINGS_OF = {"map": ("mono", "cross", "multi"), "rank_distance": ("multi",), "map@20_lareqa": ("multi",),
               "accuracy": ("all",)}


@dataclass(frozen=True)
class RunValues:
    """One run's per-query values on one dataset (see :class:`xlir_utils.evaluation.Evaluation`).

    ``labels`` are the run's label columns (``system``, ``seed`` and the system's description;
    :meth:`xlir_utils.systems.System.columns`): a system's seed-mean rows carry them, less the run
    name (``model``) and ``seed``.
    """

    labels: Mapping
    dataset: str
    query_codes: np.ndarray
    matrices: dict  # metric -> (n_queries, n_languages + 1)

    @property
    def system(self) -> str:
        """The system this run is a seed of (``full-hybrid``)."""
        return self.labels["system"]

    @property
    def seed(self) -> int | None:
        return self.labels.get("seed")


def run_values(ev, *, labels: Mapping, dataset: str, metrics: Sequence[str] = tuple(SETTINGS_OF)) -> RunValues:
    """The per-query values of an evaluation, for :func:`seed_summary`."""
    return RunValues(dict(labels), dataset, np.asarray(ev.query_codes),
                     {m: np.asarray(ev.matrices[m], dtype=float) for m in metrics if m in ev.matrices})


def restrict_queries(run: RunValues, languages: Sequence[str], all_languages: Sequence[str], dataset: str) -> RunValues:
    """``run`` on its queries in ``languages`` alone (``all_languages``: the retrieval set's
    languages, in the order of its query codes), named ``dataset``: for instance XQuAD-R's queries in
    the languages no training batch held (notebook 04 §7). Each setting keeps its candidates:
    mono and cross still search the other languages' candidates, multi the whole pool."""
    unknown = sorted(set(languages) - set(all_languages))
    if unknown:
        raise ValueError(f"languages {unknown} are not among the retrieval set's languages {tuple(all_languages)}")
    keep = np.isin(run.query_codes, [list(all_languages).index(x) for x in languages])
    return RunValues(run.labels, dataset, run.query_codes[keep], {m: v[keep] for m, v in run.matrices.items()})


def _masks(n_groups: int, n_cols: int, settings: Sequence[str]) -> np.ndarray:
    """(S, n_groups * n_cols) cell masks over (query language, column) for each setting."""
    out = []
    for setting in settings:
        mask = np.zeros((n_groups, n_cols), dtype=bool)
        if setting == "mono":
            mask[:, : n_cols - 1] = np.eye(n_groups, n_cols - 1, dtype=bool)
        elif setting == "cross":
            mask[:, : n_cols - 1] = ~np.eye(n_groups, n_cols - 1, dtype=bool)
        elif setting == "multi":
            mask[:, n_cols - 1] = True
        elif setting == "all":
            mask[:] = True
        else:
            raise ValueError(f"unknown setting {setting!r}")
        out.append(mask.ravel())
    return np.stack(out)


def _setting_means(values: np.ndarray, codes: np.ndarray, settings, weights=None) -> np.ndarray:
    """Macro means per setting: (S,) observed, or (B, S) with resample weights (B, n)."""
    n_groups = int(codes.max()) + 1
    present = np.unique(codes)
    cells = M.cell_means(values, codes, weights)  # (G, C) or (B, G, C), groups = present codes
    grid = np.full(cells.shape[:-2] + (n_groups, values.shape[1]), np.nan)
    grid[..., present, :] = cells
    return M.select_mean(grid.reshape(*grid.shape[:-2], -1), _masks(n_groups, values.shape[1], settings))


def _seed_draws(n_seeds: int, n: int, *, seed: int, dataset: str, system: str) -> np.ndarray:
    """Seed indices (n, n_seeds) drawn from a stream that depends on this system alone."""
    key = [zlib.crc32(dataset.encode()), zlib.crc32(system.encode())]
    return np.random.default_rng([seed, 2, *key]).integers(0, n_seeds, size=(n, n_seeds))


RUN_ONLY = ("model", "seed")  # label columns of a run that a system's seed means do not carry
MEAN_COLUMNS = ["dataset", "metric", "setting", "n_seeds", "seeds", "mean", "sd", "min", "max", "ci_low", "ci_high"]
COMPARISON_COLUMNS = ["a", "b", "dataset", "metric", "setting", "delta", "ci_low", "ci_high", "p_value",
                      "n_seeds_a", "n_seeds_b"]


def seed_summary(runs: Sequence[RunValues], *, n_boot: int = 1000, seed: int = 13,
                 comparisons: Sequence[tuple[str, str]] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(seed means, comparisons) of every system in ``runs``, per dataset, metric and setting
    (notebooks 04 §4, 05 §5).

    Seed means: ``mean`` over seeds, ``sd`` (ddof 1), ``min``, ``max`` and the two-level
    bootstrap interval ``ci_low``/``ci_high``. Comparisons: for each ``(a, b)`` of system names,
    ``delta`` = mean(a) - mean(b) with its interval and bootstrap p-value (module docstring).
    """
    mean_rows, cmp_rows = [], []
    by_dataset: dict[str, list[RunValues]] = {}
    for r in runs:
        by_dataset.setdefault(r.dataset, []).append(r)
    for dataset, group in by_dataset.items():
        codes = group[0].query_codes
        if any(not np.array_equal(r.query_codes, codes) for r in group):
            raise ValueError(f"runs on {dataset} were evaluated on different queries")
        weights = np.concatenate(list(M.bootstrap_weight_batches(codes, n_boot, seed, len(codes))))
        for metric, settings in SETTINGS_OF.items():
            systems: dict[str, dict] = {}
            for r in group:
                if metric not in r.matrices:
                    continue
                entry = systems.setdefault(r.system, {"labels": {k: v for k, v in r.labels.items() if k not in RUN_ONLY},
                                                      "obs": [], "boot": [], "seeds": []})
                entry["obs"].append(_setting_means(r.matrices[metric], codes, settings))
                entry["boot"].append(_setting_means(r.matrices[metric], codes, settings, weights))
                entry["seeds"].append(r.seed)
            draws_of = {}
            for name, e in systems.items():
                order = np.argsort(np.array(e["seeds"], dtype=float), kind="stable")  # runs by seed, as given or not
                e["seeds"] = [e["seeds"][i] for i in order]
                obs = np.stack([e["obs"][i] for i in order])  # (n_seeds, S)
                boot = np.stack([e["boot"][i] for i in order])  # (n_seeds, B, S)
                draws = _seed_draws(len(obs), n_boot, seed=seed, dataset=dataset, system=name)
                two_level = boot[draws, np.arange(n_boot)[:, None]].mean(1)  # (B, S)
                draws_of[name] = (obs.mean(0), two_level)
                lo, hi = np.nanquantile(two_level, [0.025, 0.975], axis=0)
                for i, setting in enumerate(settings):
                    mean_rows.append({
                        **e["labels"], "dataset": dataset, "metric": metric,
                        "setting": setting, "n_seeds": len(obs), "seeds": ",".join(map(str, e["seeds"])),
                        "mean": obs[:, i].mean(), "sd": obs[:, i].std(ddof=1) if len(obs) > 1 else np.nan,
                        "min": obs[:, i].min(), "max": obs[:, i].max(), "ci_low": lo[i], "ci_high": hi[i]})
            for a, b in comparisons:
                if a not in draws_of or b not in draws_of:
                    continue
                delta = draws_of[a][1] - draws_of[b][1]  # (B, S): shared queries, independent seeds
                observed = draws_of[a][0] - draws_of[b][0]
                lo, hi = np.nanquantile(delta, [0.025, 0.975], axis=0)
                for i, setting in enumerate(settings):
                    far = min(np.mean(delta[:, i] <= 0), np.mean(delta[:, i] >= 0))
                    cmp_rows.append({"a": a, "b": b, "dataset": dataset, "metric": metric, "setting": setting,
                                     "delta": observed[i], "ci_low": lo[i], "ci_high": hi[i],
                                     "p_value": min(1.0, 2 * far), "n_seeds_a": len(systems[a]["obs"]),
                                     "n_seeds_b": len(systems[b]["obs"])})
    means = pd.DataFrame(mean_rows)
    if means.empty:
        means = pd.DataFrame(columns=["system", *MEAN_COLUMNS])
    return means, pd.DataFrame(cmp_rows, columns=COMPARISON_COLUMNS)
