"""Language Information Removal applied to every system's stored embeddings (notebook 05 §5).

A trained model must beat the training-free baseline *at the same post-processing* to mean
anything: LIR (:mod:`xlir_utils.lir`) is applied to the zero-shot encoder (ranks 1 and 3, fixed in
advance) and to every seed of every trained system (rank 1), and each result is evaluated like
any system, with its per-query values kept for the seed statistics.
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .evaluation import evaluate
from .lir import project_out_language_directions
from .seed_statistics import RunValues, run_values
from .systems import System, embed_retrieval_set


def lir_label(system: str, rank: int) -> str:
    """The system name of ``system`` after LIR of rank ``rank``: ``full-hybrid + LIR r=1`` (notebook 05 §5)."""
    return f"{system} + LIR r={rank}"


def lir_systems(profile, system_list: Sequence[System], rset, *, ranks_zero_shot: Sequence[int] = (1, 3),
                rank_trained: int = 1) -> tuple[pd.DataFrame, list[RunValues], list[RunValues]]:
    """(tidy rows of every system + LIR, their per-query values, the per-query values of the
    systems without LIR) on ``rset``; embeddings come from notebook 04's store (an unreadable
    store is encoded again)."""
    tables, with_lir, without = [], [], []
    for s in system_list:
        q, c = embed_retrieval_set(s, rset, profile.candidate_text, profile.name)
        plain = evaluate(rset, q, c, bootstrap=0, seed=profile.seed)
        without.append(run_values(plain, model=s.label, system=s.system, training=s.training, seed=s.seed,
                                  dataset=rset.name))
        for rank in (ranks_zero_shot if s.training == "zero-shot" else (rank_trained,)):
            q2, c2 = project_out_language_directions(q, rset.queries.lang, c, rset.candidates.lang, rank=rank)
            name, training = lir_label(s.system, rank), f"LIR r={rank} on {s.system}"
            ev = evaluate(rset, q2, c2, bootstrap=profile.bootstrap_samples, seed=profile.seed,
                          model=f"{s.label}+lir{rank}", training=training, candidate_text=profile.candidate_text,
                          system=name, run_seed=s.seed)
            tables.append(ev.table)
            with_lir.append(run_values(ev, model=f"{s.label}+lir{rank}", system=name, training=training,
                                       seed=s.seed, dataset=rset.name))
    return pd.concat(tables, ignore_index=True), with_lir, without


def lir_comparisons(system_list: Sequence[System], baseline: str, rank: int = 1) -> list[tuple[str, str]]:
    """The comparisons notebook 05 reports: each trained system against the zero-shot encoder +
    LIR, each trained system + LIR against it, and hybrid + LIR against X-X + LIR and X-Y + LIR."""
    free = lir_label(baseline, rank)
    trained = list(dict.fromkeys(s.system for s in system_list if s.training != "zero-shot"))
    by_training = {s.training: s.system for s in system_list}
    pairs = [(t, free) for t in trained] + [(lir_label(t, rank), free) for t in trained]
    if "hybrid" in by_training:
        pairs += [(lir_label(by_training["hybrid"], rank), lir_label(by_training[o], rank))
                  for o in ("X-X", "X-Y") if o in by_training]
    return pairs
