"""How far apart the languages sit in a system's space, measured on the XQuAD-R pool (notebook 05 §8).

Two numbers per run, from the candidate embeddings notebook 04 stored (nothing is trained):

* ``translation_cosine``: the mean cosine between the answer sentences of one question in two
  different languages (the pool's parallel answers: translations of each other), over every
  question and language pair. Higher: translations sit closer together.
* ``centroid_distance``: the mean Euclidean distance between the centroids of two languages'
  candidates (each centroid is the mean of that language's L2-normalised embeddings), over every
  language pair. Higher: each language occupies its own region of the space.

A language-specific component that pulls languages apart shows up as a lower translation cosine
and a larger centroid distance than the system it is compared with.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd


def parallel_groups(rset) -> list[np.ndarray]:
    """Candidate rows that answer one question, one per language, for each question with a single
    answer sentence in every language it has (notebook 05 §8)."""
    groups = []
    first = ~rset.queries.question_id.duplicated().to_numpy()
    langs = rset.candidates.lang.to_numpy()
    for i in np.flatnonzero(first):
        rows = np.asarray(rset.relevant[i])
        if len(rows) >= 2 and len(set(langs[rows])) == len(rows):
            groups.append(rows)
    return groups


def translation_cosine(cand_emb: np.ndarray, groups: Sequence[np.ndarray]) -> float:
    """Mean cosine between translations (pairs within a group, different languages) of L2-normalised rows."""
    total, pairs = 0.0, 0
    for rows in groups:
        e = cand_emb[rows].astype(np.float64)
        s = e.sum(axis=0)
        n = len(rows)
        total += float(s @ s - (e * e).sum())  # the sum of the off-diagonal cosines
        pairs += n * (n - 1)
    if not pairs:
        raise ValueError("no parallel answers: translation_cosine needs questions answered in two or more languages")
    return total / pairs


def centroid_distance(cand_emb: np.ndarray, langs: Sequence[str]) -> float:
    """Mean Euclidean distance between two languages' centroids of L2-normalised rows."""
    langs = np.asarray(langs)
    names = sorted(set(langs))
    if len(names) < 2:
        raise ValueError("centroid_distance needs candidates in two or more languages")
    centroids = {x: cand_emb[langs == x].astype(np.float64).mean(axis=0) for x in names}
    return float(np.mean([np.linalg.norm(centroids[a] - centroids[b]) for a, b in itertools.combinations(names, 2)]))


def separation_table(system_list, rset, candidate_text: str, profile_name: str) -> pd.DataFrame:
    """One row per run (``model``, ``system``, ``seed``): ``translation_cosine`` and
    ``centroid_distance`` on ``rset``'s pool, from the stored embeddings (one model at a time;
    notebook 05 §8)."""
    from .systems import embed_retrieval_set, one_model_at_a_time  # lazy: `make figures` reads the table only

    groups = parallel_groups(rset)
    langs = rset.candidates.lang.to_numpy()
    rows = []
    for s in one_model_at_a_time(system_list):
        _, cands = embed_retrieval_set(s, rset, candidate_text, profile_name)
        rows.append({"model": s.label, "system": s.name, "seed": s.seed, "dataset": rset.name,
                     "translation_cosine": translation_cosine(cands, groups),
                     "centroid_distance": centroid_distance(cands, langs)})
    return pd.DataFrame(rows)


def separation_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per system: the mean over its seeds of each measure, with the lowest and highest seed (notebook 05 §8)."""
    agg = table.groupby("system", sort=False).agg(
        seeds=("model", "size"),
        translation_cosine=("translation_cosine", "mean"), translation_cosine_min=("translation_cosine", "min"),
        translation_cosine_max=("translation_cosine", "max"),
        centroid_distance=("centroid_distance", "mean"), centroid_distance_min=("centroid_distance", "min"),
        centroid_distance_max=("centroid_distance", "max"))
    return agg.reset_index()
