"""Language Information Removal applied to every system's stored embeddings (notebook 05 §5).

A trained model must beat the training-free baseline *at the same post-processing* to mean
anything: LIR (:mod:`xlir_utils.lir`) is applied to the zero-shot encoder (ranks 1 and 3, fixed in
advance) and to every seed of every trained system (rank 1), and each result is evaluated like
any system, with its per-query values kept for the seed statistics. LIR is fitted on the
evaluation pool's own embeddings (transductive), which its ``post_hoc_fit`` column says.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pandas as pd

from .evaluation import evaluate
from .lir import project_out_language_directions
from .seed_statistics import RunValues, run_values
from .systems.evaluation import label_rows
from .systems.record import System, SystemSpec, one_model_at_a_time
from .systems.store import embed_retrieval_set

LIR_FIT = "evaluation pool"  # LIR's directions come from the embeddings it is evaluated on


def lir_label(system: str, rank: int) -> str:
    """The system name of ``system`` after LIR of rank ``rank``: ``full-hybrid + LIR r=1`` (notebook 05 §5)."""
    return f"{system} + LIR r={rank}"


def lir_spec(spec: SystemSpec, rank: int) -> SystemSpec:
    """``spec`` after LIR of rank ``rank``, fitted on the evaluation pool (notebooks 05 §5, 06)."""
    return spec.with_post_hoc(f"LIR r={rank}", LIR_FIT)


def with_lir(system: System, rank: int) -> System:
    """``system`` after LIR of rank ``rank``: its name, run label and spec (notebook 05 §5).
    Its ``encode`` is the plain system's: LIR is applied to stored embeddings, not while encoding."""
    return dataclasses.replace(system, label=f"{system.label}+lir{rank}", name=lir_label(system.name, rank),
                               spec=lir_spec(system.spec, rank))


def lir_systems(profile, system_list: Sequence[System], rset, *, ranks_zero_shot: Sequence[int] = (1, 3),
                rank_trained: int = 1) -> tuple[pd.DataFrame, list[RunValues], list[RunValues]]:
    """(tidy rows of every system + LIR, their per-query values, the per-query values of the
    systems without LIR) on ``rset``; embeddings come from notebook 04's store (an unreadable
    store is encoded again)."""
    tables, with_lir_values, without = [], [], []
    for s in one_model_at_a_time(system_list):
        q, c = embed_retrieval_set(s, rset, profile.candidate_text, profile.name)
        plain = evaluate(rset, q, c, bootstrap=0, seed=profile.seed)
        without.append(run_values(plain, labels=s.columns(), dataset=rset.name))
        for rank in (rank_trained,) if s.spec.trained else ranks_zero_shot:
            q2, c2 = project_out_language_directions(q, rset.queries.lang, c, rset.candidates.lang, rank=rank)
            ev = evaluate(rset, q2, c2, bootstrap=profile.bootstrap_samples, seed=profile.seed)
            labels = with_lir(s, rank).columns()
            tables.append(label_rows(ev.table, labels, profile.candidate_text))
            with_lir_values.append(run_values(ev, labels=labels, dataset=rset.name))
    return pd.concat(tables, ignore_index=True), with_lir_values, without


def lir_comparisons(system_list: Sequence[System], baseline: str, alpha: float, rank: int = 1) -> list[tuple[str, str]]:
    """The comparisons notebook 05 reports: each trained system against the zero-shot encoder +
    LIR, each trained system + LIR against it, and hybrid + LIR against X-X + LIR and X-Y + LIR
    (full fine-tuning; hybrid at the profile's ``alpha``, not an α-sweep point)."""
    free = lir_label(baseline, rank)
    trained = list(dict.fromkeys(s.name for s in system_list if s.spec.trained))
    pairs = [(t, free) for t in trained] + [(lir_label(t, rank), free) for t in trained]
    full = {s.spec.sampling: s.name for s in system_list if s.spec.family == "full"
            and (s.spec.sampling != "hybrid" or s.spec.alpha == float(alpha))}
    if "hybrid" in full:
        pairs += [(lir_label(full["hybrid"], rank), lir_label(full[o], rank)) for o in ("X-X", "X-Y") if o in full]
    return pairs
