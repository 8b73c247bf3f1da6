"""Seed means and the two-level bootstrap (queries, then seeds) on synthetic per-query values."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xlir_utils.seed_statistics import RunValues, seed_summary

N_LANG, PER_LANG = 3, 40


def _run(system: str, seed: int, level: float, noise: float, rng, *, sampling: str = "hybrid") -> RunValues:
    """Per-query AP in every setting: ``level`` + per-query noise (shared query difficulty + own noise)."""
    codes = np.repeat(np.arange(N_LANG), PER_LANG)
    difficulty = np.random.default_rng(0).normal(0, 0.1, size=(len(codes), N_LANG + 1))  # the same queries
    v = np.clip(level + difficulty + rng.normal(0, noise, size=difficulty.shape), 0, 1)
    labels = {"model": f"{system}-s{seed}", "system": system, "seed": seed, "family": "full", "sampling": sampling}
    return RunValues(labels, "toy", codes,
                     {"map": v, "rank_distance": np.where(np.arange(N_LANG + 1) == N_LANG, 100 * (1 - v), np.nan)})


def _macro(values: np.ndarray, codes: np.ndarray, setting: str) -> float:
    """The paper's macro mean, computed the plain way."""
    cells = []
    for g in range(N_LANG):
        rows = values[codes == g]
        cols = {"mono": [g], "cross": [c for c in range(N_LANG) if c != g], "multi": [N_LANG]}[setting]
        cells += [rows[:, c].mean() for c in cols]
    return float(np.mean(cells))


def test_seed_mean_is_the_mean_of_each_seeds_macro_mean():
    rng = np.random.default_rng(1)
    runs = [_run("a", s, 0.6, 0.05, rng) for s in (1, 2, 3)]
    means, _ = seed_summary(runs, n_boot=200, seed=3)
    for setting in ("mono", "cross", "multi"):
        row = means[(means.setting == setting) & (means.metric == "map")].iloc[0]
        per_seed = [_macro(r.matrices["map"], r.query_codes, setting) for r in runs]
        assert row["mean"] == pytest.approx(np.mean(per_seed))
        assert row["sd"] == pytest.approx(np.std(per_seed, ddof=1))
        assert row["min"] == pytest.approx(min(per_seed)) and row.ci_low < row["mean"] < row.ci_high
    assert set(means[means.metric == "rank_distance"].setting) == {"multi"}


def test_seed_spread_widens_the_interval():
    rng = np.random.default_rng(2)
    calm = [_run("calm", s, 0.6, 0.02, rng) for s in (1, 2, 3)]
    shaky = [_run("shaky", s, 0.6 + 0.05 * (s - 2), 0.02, rng) for s in (1, 2, 3)]  # seeds disagree
    means, _ = seed_summary(calm + shaky, n_boot=500, seed=3)
    width = means[(means.metric == "map") & (means.setting == "multi")].set_index("system").eval("ci_high - ci_low")
    assert width["shaky"] > 2 * width["calm"]


def test_a_real_difference_is_found_and_no_difference_is_not():
    rng = np.random.default_rng(4)
    runs = ([_run("better", s, 0.65, 0.03, rng) for s in (1, 2, 3)]
            + [_run("worse", s, 0.60, 0.03, rng, sampling="X-X") for s in (1, 2, 3)]
            + [_run("same", s, 0.65, 0.03, rng, sampling="X-Y") for s in (1, 2, 3)])
    _, cmp = seed_summary(runs, n_boot=1000, seed=5, comparisons=[("better", "worse"), ("better", "same")])
    multi = cmp[(cmp.metric == "map") & (cmp.setting == "multi")].set_index("b")
    assert multi.loc["worse", "delta"] == pytest.approx(0.05, abs=0.01)
    assert multi.loc["worse", "ci_low"] > 0 and multi.loc["worse", "p_value"] < 0.01
    assert multi.loc["same", "ci_low"] < 0 < multi.loc["same", "ci_high"] and multi.loc["same", "p_value"] > 0.05


def test_runs_on_different_queries_are_refused():
    rng = np.random.default_rng(0)
    a = _run("a", 1, 0.5, 0.05, rng)
    b = _run("b", 1, 0.5, 0.05, rng)
    b = RunValues(b.labels, b.dataset, b.query_codes[::-1].copy(), b.matrices)
    with pytest.raises(ValueError, match="different queries"):
        seed_summary([a, b], n_boot=10)


def test_restricted_to_some_query_languages_the_means_are_theirs():
    from xlir_utils.seed_statistics import restrict_queries

    rng = np.random.default_rng(6)
    runs = [_run("a", s, 0.6, 0.05, rng) for s in (1, 2)]
    langs = ("de", "el", "th")  # codes 0, 1, 2
    only = [restrict_queries(r, ["el", "th"], langs, "toy, unseen") for r in runs]
    assert all(set(r.query_codes) == {1, 2} and r.dataset == "toy, unseen" for r in only)
    means, _ = seed_summary(only, n_boot=100, seed=3)
    for setting in ("mono", "cross", "multi"):
        per_seed = []
        for r in runs:  # the plain macro mean over the el and th queries, every candidate column kept
            cells = []
            for g in (1, 2):
                rows = r.matrices["map"][r.query_codes == g]
                cols = {"mono": [g], "cross": [c for c in range(N_LANG) if c != g], "multi": [N_LANG]}[setting]
                cells += [rows[:, c].mean() for c in cols]
            per_seed.append(np.mean(cells))
        row = means[(means.setting == setting) & (means.metric == "map")].iloc[0]
        assert row["mean"] == pytest.approx(np.mean(per_seed)) and row.dataset == "toy, unseen"
    with pytest.raises(ValueError, match="'xx'"):
        restrict_queries(runs[0], ["xx"], langs, "toy")


def test_adding_or_reordering_systems_leaves_the_others_intervals_as_they_were():
    rng = np.random.default_rng(6)
    a = [_run("a", s, 0.65, 0.03, rng) for s in (1, 2, 3)]
    b = [_run("b", s, 0.60 + 0.02 * s, 0.03, rng, sampling="X-X") for s in (1, 2, 3)]
    extra = [_run("extra", s, 0.55, 0.03, rng, sampling="X-Y") for s in (1, 2, 3)]
    columns = ["system", "metric", "setting", "ci_low", "ci_high"]
    means, cmp = seed_summary(a + b, n_boot=300, seed=5, comparisons=[("a", "b")])
    more_means, more_cmp = seed_summary(extra + b[::-1] + a, n_boot=300, seed=5,
                                        comparisons=[("a", "extra"), ("a", "b")])
    key = ["system", "metric", "setting"]
    pd.testing.assert_frame_equal(means[columns].sort_values(key).reset_index(drop=True),
                                  more_means[more_means.system != "extra"][columns].sort_values(key)
                                  .reset_index(drop=True))
    pd.testing.assert_frame_equal(cmp.reset_index(drop=True),
                                  more_cmp[more_cmp.b == "b"].reset_index(drop=True))
