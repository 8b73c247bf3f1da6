"""Evaluating systems one at a time and labelling their rows (notebook 04 §§3, 7, 8): every
results row carries the run's label columns (:meth:`~xlir_utils.systems.record.System.columns`)."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ..bitext import evaluate_tatoeba
from ..encoders.fingerprint_scope import frozen_weights
from ..evaluation import evaluate, paired_matrices
from ..seed_statistics import RunValues, run_values
from .record import SPEC_COLUMNS, System, one_model_at_a_time
from .store import embed_retrieval_set

LABEL_COLUMNS = ["model", "system", "seed", *SPEC_COLUMNS]


def label_rows(table: pd.DataFrame, labels: dict, candidate_text: str | None = None) -> pd.DataFrame:
    """``table`` (the engine's columns) with a system's label columns in front, and the candidate
    text the set was encoded with (notebooks 04 §3, 05 §5)."""
    front = {**labels, **({} if candidate_text is None else {"candidate_text": candidate_text})}
    out = table.assign(**{k: [v] * len(table) for k, v in front.items()})
    return out[list(front) + [c for c in table.columns if c not in front]]


def evaluate_systems(profile, system_list: Sequence[System], rsets: dict, *,
                     skip: Callable[[System, str], bool] | None = None):
    """Encode and evaluate every system on every retrieval set, one model in memory at a time
    (notebook 04 §3).

    Returns (tidy table, per-query multilingual rows, per-query values of every run for the seed
    statistics). ``skip(system, dataset)`` leaves a pair out (e.g. MLQA-R for systems trained on it).
    """
    tables, per_query, values = [], [], []
    with frozen_weights():  # evaluation only: each model's weights hashed once per set-up
        for system in one_model_at_a_time(system_list):
            _evaluate_one(profile, system, rsets, skip, tables, per_query, values)
    # the per-query rows of one query side by side: its labels repeat, so the stored file compresses
    # better (quick's results/per_query_multi.parquet: 3.9 MB sorted, 5.2 MB in run order, both zstd)
    per_query = pd.concat(per_query, ignore_index=True).sort_values(["dataset", "query_id", "model"], kind="stable",
                                                                    ignore_index=True)
    return pd.concat(tables, ignore_index=True), per_query, values


def _evaluate_one(profile, system: System, rsets: dict, skip, tables: list, per_query: list, values: list) -> None:
    """One system on every retrieval set it is not skipped on: its rows appended to the lists."""
    labels = system.columns()
    for name, rset in rsets.items():
        if skip is not None and skip(system, name):
            continue
        q, c = embed_retrieval_set(system, rset, profile.candidate_text, profile.name)
        ev = evaluate(rset, q, c, bootstrap=profile.bootstrap_samples, seed=profile.seed)
        tables.append(label_rows(ev.table, labels, profile.candidate_text))
        values.append(run_values(ev, labels=labels, dataset=name))
        multi = ev.per_query[ev.per_query.setting == "multi"]
        per_query.append(label_rows(pd.DataFrame({  # float32 on disk: half the bytes of the largest table
            "dataset": name, "query_id": multi.query_id.to_numpy(), "query_lang": multi.query_lang.to_numpy(),
            "n_relevant": multi.n_rel.to_numpy(), "ap": multi["map"].to_numpy(np.float32),
            "rank_distance": multi.rank_distance.to_numpy(np.float32)}), labels))


def paired_against(profile, values: Sequence[RunValues], languages: Sequence[str], *, reference: str,
                   dataset: str, metrics: tuple[str, ...] = ("map",)) -> pd.DataFrame:
    """Every run against ``reference`` (a run label) on the same queries of ``dataset``: one row
    per (run, setting, query language, metric) with both macro means, the difference, its paired
    bootstrap CI and a sign-flip p-value (:func:`xlir_utils.evaluation.paired_matrices`;
    notebook 04 §7). ``values``: the per-query values :func:`evaluate_systems` returned;
    ``languages``: the retrieval set's languages (the values' query codes index them)."""
    runs = [v for v in values if v.dataset == dataset]
    by_label = {v.labels["model"]: v for v in runs}
    if reference not in by_label:
        raise ValueError(f"no per-query values of {reference!r} on {dataset!r}: evaluate it first "
                         f"(runs on {dataset!r}: {sorted(by_label)})")
    ref = by_label[reference]
    langs = list(languages)
    rows = []
    for run in runs:
        if run is ref:
            continue
        if not np.array_equal(run.query_codes, ref.query_codes):
            raise ValueError(f"{run.labels['model']!r} and {reference!r} were evaluated on different queries of {dataset!r}")
        cmp = paired_matrices(run.matrices, ref.matrices, np.asarray(langs)[run.query_codes], langs, metrics=metrics,
                              n=profile.bootstrap_samples, seed=profile.seed)
        rows.append(label_rows(cmp.assign(reference=reference, dataset=dataset), dict(run.labels)))
    if not rows:
        return pd.DataFrame(columns=[*LABEL_COLUMNS, "reference", "dataset"])
    return pd.concat(rows, ignore_index=True)


def evaluate_tatoeba_systems(profile, system_list: Sequence[System],
                             pairs_by_lang: dict) -> tuple[pd.DataFrame, list[RunValues]]:
    """Tatoeba for every system (notebook 04 §3, §8): tidy rows and per-query values, as
    :func:`evaluate_systems` returns them for LAReQA. Sentences go through the kit's cached encode."""
    tables, values = [], []
    with frozen_weights():  # evaluation only: each model's weights hashed once per set-up
        for s in one_model_at_a_time(system_list):
            table, vals = evaluate_tatoeba(s.encode, pairs_by_lang, bootstrap=profile.bootstrap_samples,
                                           seed=profile.seed)
            labels = s.columns()
            tables.append(label_rows(table, labels, profile.candidate_text))
            values += [dataclasses.replace(v, labels=labels) for v in vals]
    return pd.concat(tables, ignore_index=True), values
