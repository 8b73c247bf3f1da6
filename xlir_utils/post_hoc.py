"""Post-hoc erasure of language identity applied to every system's stored embeddings
(notebook 05 §5).

A trained model must beat the training-free baseline *at the same post-processing* to mean
anything. Three erasers, each a :class:`PostHoc` (method + the text it was fitted on, the
``post_hoc`` and ``post_hoc_fit`` columns of every row):

* **LIR fitted on the evaluation pool** (:mod:`xlir_utils.lir`; transductive, notebook 05 §5):
  ranks 1 and 3 for the zero-shot encoder, rank 1 for every seed of every trained system, fixed
  in advance;
* **LIR fitted on held-out text** (rank 1, NTREX-128; :mod:`xlir_utils.erasure`);
* **LEACE fitted on held-out text** (language as the concept).

Each result is evaluated like any system, with its per-query values kept for the seed statistics.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import erasure
from .encoders.fingerprint_scope import frozen_weights
from .evaluation import evaluate
from .lir import language_directions, project_out_language_directions, remove_language_information
from .seed_statistics import RunValues, run_values
from .systems.evaluation import label_rows
from .systems.record import System, SystemSpec, one_model_at_a_time
from .systems.store import embed_retrieval_set

LIR_FIT = "evaluation pool"  # transductive LIR: directions from the embeddings it is evaluated on


@dataclass(frozen=True)
class PostHoc:
    """An eraser as a system modifier: ``method`` (``"LIR r=1"``, ``"LEACE"``) fitted on ``fit``
    (:data:`LIR_FIT` or :data:`xlir_utils.erasure.FIT_SET`)."""

    method: str
    fit: str

    def name(self, system: str) -> str:
        """The system name after this eraser: ``full-hybrid + LIR r=1`` (fitted on the pool),
        ``full-hybrid + LEACE (NTREX-128)`` (fitted elsewhere)."""
        return f"{system} + {self.method}" + ("" if self.fit == LIR_FIT else f" ({self.fit})")

    def run_suffix(self) -> str:
        """What a run label gains: ``+lir1`` (on the pool), ``+leace-ntrex-128``."""
        tag = self.method.lower().replace("r=", "").replace(" ", "")
        return f"+{tag}" + ("" if self.fit == LIR_FIT else f"-{self.fit.lower()}")


def lir(rank: int, fit: str = LIR_FIT) -> PostHoc:
    """LIR of rank ``rank`` fitted on ``fit``."""
    return PostHoc(f"LIR r={rank}", fit)


LEACE = PostHoc("LEACE", erasure.FIT_SET)
LIR_HELD_OUT = lir(1, erasure.FIT_SET)


def lir_label(system: str, rank: int) -> str:
    """The system name of ``system`` after LIR of rank ``rank`` fitted on the evaluation pool:
    ``full-hybrid + LIR r=1`` (notebooks 05 §5, 06)."""
    return lir(rank).name(system)


def lir_spec(spec: SystemSpec, rank: int) -> SystemSpec:
    """``spec`` after LIR of rank ``rank``, fitted on the evaluation pool (notebooks 05 §5, 06)."""
    post = lir(rank)
    return spec.with_post_hoc(post.method, post.fit)


def with_post_hoc(system: System, post: PostHoc) -> System:
    """``system`` after ``post``: its name, run label and spec (notebook 05 §5). Its ``encode`` is
    the plain system's: erasers are applied to stored embeddings, not while encoding."""
    return dataclasses.replace(system, label=system.label + post.run_suffix(), name=post.name(system.name),
                               spec=system.spec.with_post_hoc(post.method, post.fit))


Erased = Callable[[], tuple[np.ndarray, np.ndarray]]


def _held_out_fits(system: System, fit: pd.DataFrame | None, profile_name: str):
    """(LIR's language direction, the LEACE eraser), fitted once per system on the fit text's
    embeddings; None without fit text."""
    if fit is None:
        return None
    held, held_langs = erasure.embed_fit_texts(system, fit, profile_name)
    return language_directions(held, held_langs, 1), erasure.fit_leace(held, held_langs)


def _erasers(rset, q: np.ndarray, c: np.ndarray, ranks: Sequence[int], held_out) -> list[tuple[PostHoc, Erased]]:
    """(eraser, a function giving the erased queries and candidates) for one system on ``rset``;
    ``held_out``: its :func:`_held_out_fits`."""
    qlang, clang = rset.queries.lang, rset.candidates.lang
    out: list[tuple[PostHoc, Erased]] = [
        (lir(rank), lambda rank=rank: project_out_language_directions(q, qlang, c, clang, rank=rank)) for rank in ranks]
    if held_out is None:
        return out
    directions, eraser = held_out
    return out + [
        (LIR_HELD_OUT, lambda: (remove_language_information(q, qlang, directions),
                                remove_language_information(c, clang, directions))),
        (LEACE, lambda: (erasure.apply_leace(eraser, q), erasure.apply_leace(eraser, c)))]


def post_hoc_systems(profile, system_list: Sequence[System], rsets, fit: pd.DataFrame | None = None, *,
                     ranks_zero_shot: Sequence[int] = (1, 3), rank_trained: int = 1
                     ) -> tuple[pd.DataFrame, list[RunValues], list[RunValues]]:
    """(tidy rows of every system after every eraser, their per-query values, the per-query values
    of the systems without one) on ``rsets`` (one retrieval set or several; notebook 05 §5).
    Embeddings come from notebook 04's store (an unreadable store is encoded again). LIR on the
    pool is always applied; with ``fit`` (:func:`xlir_utils.erasure.fit_texts`), LIR and LEACE
    fitted on that text too. Each model is loaded once for all sets."""
    rsets = [rsets] if hasattr(rsets, "queries") else list(rsets)
    tables, erased_values, without = [], [], []
    with frozen_weights():  # evaluation only: each model's weights hashed once per set-up
        for s in one_model_at_a_time(system_list):
            _post_hoc_one(profile, s, rsets, fit, ranks_zero_shot, rank_trained, tables, erased_values, without)
    return pd.concat(tables, ignore_index=True), erased_values, without


def _post_hoc_one(profile, s: System, rsets: list, fit: pd.DataFrame | None, ranks_zero_shot: Sequence[int],
                  rank_trained: int, tables: list, erased_values: list, without: list) -> None:
    """One system on every set, plain and after each eraser: its rows appended to the lists."""
    held_out = _held_out_fits(s, fit, profile.name)  # fitted once, applied to every set
    for rset in rsets:
        q, c = embed_retrieval_set(s, rset, profile.candidate_text, profile.name)
        plain = evaluate(rset, q, c, bootstrap=0, seed=profile.seed)
        without.append(run_values(plain, labels=s.columns(), dataset=rset.name))
        ranks = (rank_trained,) if s.spec.trained else ranks_zero_shot
        for post, erased in _erasers(rset, q, c, ranks, held_out):
            q2, c2 = erased()
            ev = evaluate(rset, q2, c2, bootstrap=profile.bootstrap_samples, seed=profile.seed)
            labels = with_post_hoc(s, post).columns()
            tables.append(label_rows(ev.table, labels, profile.candidate_text))
            erased_values.append(run_values(ev, labels=labels, dataset=rset.name))


def post_hoc_comparisons(system_list: Sequence[System], baseline: str, alpha: float, rank: int = 1,
                         held_out: bool = True) -> list[tuple[str, str]]:
    """The comparisons notebook 05 reports (each pair: a, b; the delta is a − b).

    LIR on the pool: each trained system against the zero-shot encoder + LIR, each trained
    system + LIR against it, and hybrid + LIR against X-X + LIR and X-Y + LIR (full fine-tuning;
    hybrid at the profile's ``alpha``, not an α-sweep point). With ``held_out``: LEACE on the
    zero-shot encoder against the encoder; each trained system against the zero-shot encoder +
    LEACE (does erasure alone match training?); each trained system + LEACE against the system
    (does it add to training?); and, for the zero-shot encoder and hybrid, LIR on the pool against
    LIR on held-out text (how much the transductive fit flatters LIR).
    """
    free = lir_label(baseline, rank)
    trained = list(dict.fromkeys(s.name for s in system_list if s.spec.trained))
    pairs = [(t, free) for t in trained] + [(lir_label(t, rank), free) for t in trained]
    full = {s.spec.sampling: s.name for s in system_list if s.spec.family == "full"
            and (s.spec.sampling != "hybrid" or s.spec.alpha == float(alpha))}
    if "hybrid" in full:
        pairs += [(lir_label(full["hybrid"], rank), lir_label(full[o], rank)) for o in ("X-X", "X-Y") if o in full]
    if not held_out:
        return pairs
    leace_free = LEACE.name(baseline)
    pairs += [(leace_free, baseline)] + [(t, leace_free) for t in trained] + [(LEACE.name(t), t) for t in trained]
    pairs += [(lir_label(s, 1), LIR_HELD_OUT.name(s)) for s in [baseline, *([full["hybrid"]] if "hybrid" in full else [])]]
    return pairs
