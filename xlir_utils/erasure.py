"""Erasing language identity with erasers fitted on text that is never evaluated (notebook 05 §5).

LIR (:mod:`xlir_utils.lir`), as notebook 05 §5 applies it, is fitted on the evaluation pool's own
embeddings (transductive). This module fits erasers on held-out text instead: NTREX-128 news
sentences in every evaluation language (:func:`fit_texts`), encoded by each system and stored
like its evaluation embeddings (:func:`embed_fit_texts`). Two erasers are fitted on them:

* **LIR**, each language's top principal direction(s), as in notebook 05 §5 but off the pool;
* **LEACE** (Belrose et al. 2023, arXiv 2306.03819; the ``concept-erasure`` package), with the
  language as the concept: the least-squares affine map after which *no* linear function of the
  embedding predicts the language better than a constant. One map serves every language, so it
  needs no language label at retrieval time (LIR needs the language of every text it projects).

Both outputs are L2-normalised again, as every embedding the engine ranks with is.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from concept_erasure import LeaceEraser

from .data import monolingual_text
from .data.pairs import normalise_text
from .encoders.fingerprint_scope import frozen_weights
from .keyed_arrays import cached_keyed_arrays, text_digest
from .seeding import derived_seed
from .systems.record import System
from .systems.store import embeddings_path

FIT_SET = "NTREX-128"  # the ``post_hoc_fit`` of the erasers fitted here
FIT_STORE = "erasure-fit"  # the store file of a system's embeddings of the fit text


def fit_texts(languages: Sequence[str], per_language: int, seed: int, exclude: set[str] = frozenset()
              ) -> pd.DataFrame:
    """The held-out text the erasers are fitted on (notebook 05 §5): ``per_language`` NTREX-128
    sentences of each language (a seeded sample; ``text``, ``lang``), none of whose normalised
    form is in ``exclude`` (the evaluation texts)."""
    rows = []
    for lang in languages:
        texts = [t for t in monolingual_text(lang) if normalise_text(t) not in exclude]
        rng = np.random.default_rng(derived_seed(seed, "erasure-fit", lang))
        rows += [(texts[i], lang) for i in sorted(rng.permutation(len(texts))[:per_language])]
    return pd.DataFrame(rows, columns=["text", "lang"])


def embed_fit_texts(system: System, fit: pd.DataFrame, profile_name: str) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, languages) of the fit text under ``system``, each sentence encoded in both roles
    (as a query, then as a passage: E5's two prompts, as the pool's queries and candidates are), so
    an eraser fitted on them sees both. From the evaluation store when it holds them for this model
    and text, else encoded and stored; a store that cannot be written is skipped (notebook 05 §5)."""
    path = embeddings_path(profile_name, system.label, FIT_STORE)
    texts, text_langs = fit.text.tolist(), fit.lang.tolist()
    with frozen_weights():  # evaluation only: the model's weights hashed once per set-up
        key = f"{system.fingerprint}|query+passage|{len(fit)}|{text_digest([*fit.text, *fit.lang], 16)}"
        stored = cached_keyed_arrays(path, key, ("queries", "passages"), lambda: {
            "queries": system.encode(texts, text_langs, "query").astype(np.float32),
            "passages": system.encode(texts, text_langs, "passage").astype(np.float32)},
            f"the fit-text embeddings of {system.label}")
    return np.vstack([stored["queries"], stored["passages"]]), np.concatenate([fit.lang.to_numpy()] * 2)


def fit_leace(emb: np.ndarray, langs: Sequence[str]) -> LeaceEraser:
    """LEACE with the language as the concept (one-hot over the languages in ``langs``), fitted in
    float64 on ``emb`` (notebook 05 §5)."""
    langs = np.asarray(langs)
    names = np.unique(langs)
    if len(names) < 2:
        raise ValueError(f"LEACE needs text in at least two languages to erase the language; got {list(names)}")
    z = torch.from_numpy((langs[:, None] == names[None, :]).astype(np.float64))
    return LeaceEraser.fit(torch.from_numpy(np.asarray(emb, dtype=np.float64)), z)


def apply_leace(eraser: LeaceEraser, emb: np.ndarray) -> np.ndarray:
    """``emb`` after the eraser, L2-normalised again (float32; notebook 05 §5)."""
    out = eraser(torch.from_numpy(np.asarray(emb, dtype=np.float64))).numpy()
    out /= np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)
    return out.astype(np.float32)
