"""Training pairs from a parsed retrieval set, and the leakage check that guards training.

A pair is (question id, query language, query, passage language, passage): the question in
one language with its answer sentence in the same (monolingual) or another (cross-lingual)
language. The samplers in :mod:`xlir_utils.sampling` pick rows of this table.
"""
from __future__ import annotations

import re
import unicodedata

import numpy as np
import pandas as pd

from ..errors import SettingsError, XlirError
from .lareqa import RetrievalSet

PAIR_COLUMNS = ["question_id", "query_lang", "query", "passage_lang", "passage", "dataset"]


class LeakageError(XlirError):
    """Training data shares question ids or texts with the evaluation set."""


PAIR_KINDS = ("X-X", "X-Y")
_PAIR_KIND_NAMES = {"x-x": "X-X", "xx": "X-X", "mono": "X-X", "x-y": "X-Y", "xy": "X-Y", "cross": "X-Y"}


def build_pairs(rset: RetrievalSet, candidate_text: str = "sentence",
                kinds: tuple[str, ...] = PAIR_KINDS) -> pd.DataFrame:
    """Every (question id, query language, passage language) combination of a retrieval set
    (notebook 01 §5; :func:`xlir_utils.data.training_pairs` for notebooks 02-03).

    ``kinds`` picks X-X rows (query language = passage language), X-Y rows, or both (any case;
    the older names ``"mono"`` and ``"cross"`` are accepted). Passages are the answer sentences
    (``candidate_text`` as in :meth:`RetrievalSet.candidate_texts`).
    """
    wanted = {_PAIR_KIND_NAMES.get(str(k).strip().lower(), k) for k in kinds}
    if not wanted <= set(PAIR_KINDS):
        raise SettingsError(f"unknown pair kind(s) {sorted(wanted - set(PAIR_KINDS))}; choose from {PAIR_KINDS}")
    texts = rset.candidate_texts(candidate_text)
    cand_lang = rset.candidates["lang"].to_numpy()
    rows = []
    for qid, qlang, qtext, rel in zip(rset.queries.question_id, rset.queries.lang,
                                      rset.queries.text, rset.relevant):
        for pos in rel:
            plang = cand_lang[pos]
            kind = "X-X" if plang == qlang else "X-Y"
            if kind in wanted:
                rows.append((qid, qlang, qtext, plang, texts[pos], rset.name))
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def normalise_text(text: str) -> str:
    """NFKC, case-folded, whitespace-collapsed: the form texts are compared in."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().casefold()


def check_no_leakage(pairs: pd.DataFrame, eval_sets: list[RetrievalSet], *, other_texts: dict | None = None,
                     max_examples: int = 5) -> dict:
    """Refuse to train on evaluation data: no shared question id, query or sentence text
    (hard negatives included, where the pairs have a ``negative`` column); ``other_texts``:
    {name: texts} of evaluation sets that are not retrieval sets (Tatoeba). Notebook 01 §5 shows
    it; :func:`xlir_utils.data.training_pairs` runs it before every training run (notebooks 02-03).

    Returns a summary dict when clean; raises :class:`LeakageError` naming what overlaps.
    """
    train_ids = set(pairs["question_id"])
    train_texts = {normalise_text(t) for t in _distinct_texts(pairs)}
    problems = []
    for rset in eval_sets:
        ids = train_ids & set(rset.queries.question_id)
        texts = train_texts & _eval_texts(rset)
        texts.discard("")
        if ids:
            problems.append(f"{len(ids)} question id(s) shared with {rset.name}, e.g. {sorted(ids)[:max_examples]}")
        if texts:
            problems.append(f"{len(texts)} text(s) shared with {rset.name}, e.g. {sorted(texts)[:max_examples]}")
    for name, texts in (other_texts or {}).items():
        shared = train_texts & {normalise_text(t) for t in texts}
        shared.discard("")
        if shared:
            problems.append(f"{len(shared)} text(s) shared with {name}, e.g. {sorted(shared)[:max_examples]}")
    if problems:
        raise LeakageError(
            "Training data overlaps the evaluation data: " + "; ".join(problems)
            + ". Train on a different dataset (quick: MLQA-R -> evaluate XQuAD-R) or drop the overlap."
        )
    return {"train_question_ids": len(train_ids), "train_texts": len(train_texts),
            "eval_sets": [r.name for r in eval_sets] + list(other_texts or {}), "shared": 0}


def drop_overlap(pairs: pd.DataFrame, eval_sets: list[RetrievalSet], other_texts: dict | None = None) -> pd.DataFrame:
    """Remove training rows whose id or texts occur in an evaluation set (reverse fold; mMARCO)."""
    ids, texts = set(), set()
    for rset in eval_sets:
        ids |= set(rset.queries.question_id)
        texts |= _eval_texts(rset)
    for other in (other_texts or {}).values():
        texts |= {normalise_text(t) for t in other}
    hit = {t: normalise_text(t) in texts for t in _distinct_texts(pairs)}  # each distinct text once
    keep = ~pairs.question_id.isin(ids)
    for col in _text_columns(pairs):
        keep &= ~pairs[col].map(hit).astype(bool)
    return pairs[keep].reset_index(drop=True)


def _text_columns(pairs: pd.DataFrame) -> list[str]:
    return ["query", "passage"] + (["negative"] if "negative" in pairs.columns else [])


def _distinct_texts(pairs: pd.DataFrame) -> np.ndarray:
    """Every distinct training text (queries, passages, hard negatives)."""
    return pd.unique(pd.concat([pairs[c] for c in _text_columns(pairs)], ignore_index=True))


def _eval_texts(rset: RetrievalSet) -> set[str]:
    """The normalised queries and candidate sentences of an evaluation set."""
    return {normalise_text(t) for t in pd.concat([rset.queries.text, rset.candidates.sentence]).unique()}
