"""Monolingual text for masked-language modelling, one list per language (notebook 03 §2).

NTREX-128 + Tatoeba (:func:`xlir_utils.data.monolingual_text`) plus the training set's own
sentences of that language (MLQA-R candidates), minus any text that occurs in an evaluation
set. Languages never trained on (el, ru, th, tr under ``quick``) still get their own text.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..config import Profile
from ..data.registry import language_tuple
from ..seeding import derived_seed


def mlm_texts(lang: str, profile: Profile, *, limit: int | None = None, eval_texts: set[str] | None = None,
              train_sentences: Sequence[str] = ()) -> list[str]:
    """Monolingual text of ``lang`` for its adapter: NTREX-128 + Tatoeba + the training set's sentences.

    Texts that occur in an evaluation set (``eval_texts``, normalised) are dropped; the
    rest is shuffled with a seed derived from the profile's seed and the language, and cut to ``limit``.
    """
    from ..data import monolingual_text
    from ..data.pairs import normalise_text

    texts = monolingual_text(lang, extra=list(train_sentences))
    if eval_texts:
        texts = [t for t in texts if normalise_text(t) not in eval_texts]
    rng = np.random.default_rng(derived_seed(profile.seed, "mlm-texts", lang))
    texts = [texts[i] for i in rng.permutation(len(texts))]
    return texts[:limit] if limit else texts


def mlm_corpus(profile: Profile, languages: Sequence[str] | None = None) -> dict[str, list[str]]:
    """The MLM text of every adapter language, training-set sentences added and evaluation text
    removed (notebook 03 §2)."""
    from ..data import read_processed
    from ..data.pairs import normalise_text

    a = profile.adapters
    languages = language_tuple(languages if languages is not None else a.languages, "adapter languages")
    train = read_processed(profile.train_dataset, profile.name, articles=profile.train_articles) \
        if profile.train_dataset in ("mlqa-r", "xquad-r") else None
    eval_texts: set[str] = set()
    for name in profile.eval_datasets:
        if name == profile.train_dataset:
            continue
        rset = read_processed(name, profile.name, articles=profile.eval_articles)
        eval_texts |= {normalise_text(t) for t in pd.concat([rset.queries.text, rset.candidates.sentence])}
    corpus = {}
    for lang in languages:
        extra = []
        if train is not None and lang in train.languages:
            extra = train.candidates.sentence[train.candidates.lang == lang].tolist()
        corpus[lang] = mlm_texts(lang, profile, limit=a.max_texts_per_language, eval_texts=eval_texts,
                                 train_sentences=extra)
    return corpus
