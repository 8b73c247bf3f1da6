"""Language Information Removal (Yang et al. 2021, arXiv 2109.04727): a training-free baseline.

For each language, the top ``r`` principal directions of that language's embeddings carry
much of its *identity*; projecting them out of that language's vectors removes a language
offset without any training. Applied to the zero-shot encoder it shows how much of the
pooled-mAP gap is an offset rather than missing alignment (notebook 05).

Two steps: :func:`fit_language_directions` estimates the directions from a set's queries and
candidates; :func:`remove_language_information` projects any vectors off them (the set's own,
or a question typed into notebook 06's explorer). :func:`project_out_language_directions` does
both for a set.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def language_directions(emb: np.ndarray, langs: Sequence[str], rank: int) -> dict[str, np.ndarray]:
    """Per language, the top ``rank`` right-singular vectors of its (uncentred) embeddings."""
    langs = np.asarray(langs)
    out = {}
    for lang in np.unique(langs):
        x = emb[langs == lang].astype(np.float64)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        out[str(lang)] = vt[:rank]
    return out


def fit_language_directions(query_emb: np.ndarray, query_langs: Sequence[str], cand_emb: np.ndarray,
                            cand_langs: Sequence[str], rank: int = 1) -> dict[str, np.ndarray]:
    """LIR's fit step (notebooks 05 §5, 06): each language's top ``rank`` directions, estimated
    from all of that language's vectors (its queries and candidates together; no relevance labels)."""
    emb = np.vstack([query_emb, cand_emb])
    langs = np.concatenate([np.asarray(query_langs), np.asarray(cand_langs)])
    return language_directions(emb, langs, rank)


def remove_language_information(emb: np.ndarray, langs: Sequence[str],
                                directions: dict[str, np.ndarray]) -> np.ndarray:
    """LIR's apply step (notebooks 05 §5, 06): project each row off its language's directions and
    L2-normalise again (a row of a language without directions is only re-normalised)."""
    langs = np.asarray(langs)
    out = emb.astype(np.float64).copy()
    for lang, v in directions.items():
        rows = langs == lang
        out[rows] -= (out[rows] @ v.T) @ v
    out /= np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)
    return out.astype(np.float32)


def project_out_language_directions(query_emb: np.ndarray, query_langs: Sequence[str], cand_emb: np.ndarray,
                                    cand_langs: Sequence[str], rank: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """LIR on both sides (notebook 05 §5): the directions of :func:`fit_language_directions` are
    projected out of each language's queries and candidates, which are then re-normalised."""
    dirs = fit_language_directions(query_emb, query_langs, cand_emb, cand_langs, rank)
    return (remove_language_information(query_emb, query_langs, dirs),
            remove_language_information(cand_emb, cand_langs, dirs))
