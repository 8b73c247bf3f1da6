"""The training pairs of a profile, always behind the leakage check (notebooks 02 and 03).

``profile.train_dataset`` picks the source: ``mlqa-r`` (smoke, quick: the cross-dataset
zero-shot protocol) or ``xquad-r`` (the reverse fold) from the processed LAReQA tables, or
``mmarco`` (paper: the public part of the paper's training data, subsampled to
``profile.train_queries`` queries, parallel in ``profile.train_languages``).
"""
from __future__ import annotations

import pandas as pd

from ..errors import SettingsError
from .datasets import retrieval_set, training_set
from .lareqa import RetrievalSet
from .mmarco import load_mmarco, mmarco_pairs
from .pairs import build_pairs, check_no_leakage, drop_overlap
from .tatoeba import tatoeba_texts

TRAIN_DATASETS = ("mlqa-r", "xquad-r", "mmarco")


def evaluation_sets(profile) -> list[RetrievalSet]:
    """The profile's evaluation sets that the leakage check guards training against: every
    ``eval_datasets`` entry except the training dataset itself (the reverse fold trains on
    XQuAD-R), the development set included, with every question (notebooks 02 §1, 03 §1)."""
    return [retrieval_set(profile, name, every_question=True)
            for name in profile.eval_datasets if name != profile.train_dataset]


def check_training_pairs(profile, pairs: pd.DataFrame, eval_sets: list[RetrievalSet] | None = None) -> dict:
    """The leakage check (:func:`check_no_leakage`) of any pairs table against the profile's
    evaluation sets and Tatoeba: what the training pairs pass, and transformed pairs (code-switched,
    notebook 02 §7) pass again before training."""
    eval_sets = evaluation_sets(profile) if eval_sets is None else eval_sets
    other = {"tatoeba": tatoeba_texts(profile.tatoeba_languages)} if profile.tatoeba_languages else {}
    return check_no_leakage(pairs, eval_sets, other_texts=other)


def training_pairs(profile, eval_sets: list[RetrievalSet]) -> tuple[pd.DataFrame, dict]:
    """(pairs table, leakage report) for ``profile``; raises if training overlaps ``eval_sets``
    (notebooks 02 §1, 03 §1).

    LAReQA training sets must not overlap at all (:class:`LeakageError`); mMARCO rows that
    share a text with an evaluation set are dropped, and the report counts them.

    With ``profile.hard_negatives`` and a source that has them (mMARCO's BM25 negatives),
    the pairs carry a ``negative`` column that training adds to the in-batch negatives.
    """
    name = profile.train_dataset
    if name in ("mlqa-r", "xquad-r"):
        pairs = build_pairs(training_set(profile), profile.candidate_text)
    elif name == "mmarco":
        parallel = load_mmarco(profile.train_languages, n_queries=profile.train_queries, seed=profile.seed)
        pairs = mmarco_pairs(parallel, hard_negatives=profile.hard_negatives)
        # mMARCO is not derived from LAReQA or Tatoeba: a shared text is a coincidence (a short,
        # generic sentence), so such rows are dropped and counted rather than stopping the run.
        n_rows = len(pairs)
        other = {"tatoeba": tatoeba_texts(profile.tatoeba_languages)} if profile.tatoeba_languages else {}
        pairs = drop_overlap(pairs, eval_sets, other)
        return pairs, {**check_training_pairs(profile, pairs, eval_sets), "dropped_overlap_rows": n_rows - len(pairs)}
    else:
        raise SettingsError(f"Unknown training dataset {name!r}; choose one of {', '.join(TRAIN_DATASETS)}.")
    return pairs, check_training_pairs(profile, pairs, eval_sets)
