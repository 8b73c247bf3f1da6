"""Monolingual text for masked-language modelling, one list per language (notebook 03 §2).

NTREX-128 (news, 1,997 sentences per language, all 11 XQuAD-R languages) plus the training set's
own sentences of that language (MLQA-R's training part, for its 7 languages), minus any text that
occurs in an evaluation set. :func:`question_corpus` adds questions: the training part's (7
languages) and MKQA's (ar, en, es, ru, tr, zh), for the heads that are offered more text. Tatoeba is an evaluation set of the kit (notebook 04), so none of its
sentences is MLM text. A seeded share of each language's text is held out to measure MLM loss.
Languages never trained on for retrieval (el, ru, th, tr under ``quick``) still get their own text.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..config import Profile
from ..data import evaluation_sets, monolingual_text, training_set
from ..data.pairs import normalise_text
from ..data.registry import language_tuple
from ..data.mkqa import MKQA_LANGS, mkqa_questions
from ..data.tatoeba import TATOEBA_XQUAD_R, tatoeba_texts
from ..seeding import derived_seed

SOURCES = ("ntrex128",)  # Tatoeba left the MLM text when it became an evaluation set


def mlm_texts(lang: str, profile: Profile, *, limit: int | None = None, eval_texts: set[str] | None = None,
              train_sentences: Sequence[str] = ()) -> list[str]:
    """Monolingual text of ``lang`` for its adapter: NTREX-128 + the training set's sentences.

    Texts that occur in an evaluation set (``eval_texts``, normalised) are dropped; the rest is
    shuffled with a seed derived from the profile's seed and the language, and cut to ``limit``.
    """
    texts = monolingual_text(lang, sources=SOURCES, extra=list(train_sentences))
    if eval_texts:
        texts = [t for t in texts if normalise_text(t) not in eval_texts]
    rng = np.random.default_rng(derived_seed(profile.seed, "mlm-texts", lang))
    texts = [texts[i] for i in rng.permutation(len(texts))]
    return texts[:limit] if limit else texts


def evaluation_texts(profile: Profile) -> set[str]:
    """Every normalised query and candidate sentence of the profile's evaluation sets (LAReQA and
    Tatoeba): what no training or eraser-fit text may be (notebooks 03 §2, 05 §5)."""
    texts: set[str] = set()
    for rset in evaluation_sets(profile):
        texts |= {normalise_text(t) for t in pd.concat([rset.queries.text, rset.candidates.sentence])}
    # every Tatoeba language the profile evaluates (paper: XTREME-R's 41), and always the offline ten
    langs = list(TATOEBA_XQUAD_R) + [x for x in (profile.tatoeba_languages or ()) if x not in TATOEBA_XQUAD_R]
    return texts | {normalise_text(t) for t in tatoeba_texts(langs)}


def mlm_corpus(profile: Profile, languages: Sequence[str] | None = None) -> dict[str, list[str]]:
    """The MLM text of every adapter language, training-set sentences added and evaluation text
    removed (notebook 03 §2)."""
    a = profile.adapters
    languages = language_tuple(languages if languages is not None else a.languages, "adapter languages")
    train = training_set(profile) if profile.train_dataset in ("mlqa-r", "xquad-r") else None
    eval_texts = evaluation_texts(profile)
    corpus = {}
    for lang in languages:
        extra = []
        if train is not None and lang in train.languages:
            extra = train.candidates.sentence[train.candidates.lang == lang].tolist()
        corpus[lang] = mlm_texts(lang, profile, limit=a.max_texts_per_language, eval_texts=eval_texts,
                                 train_sentences=extra)
    return corpus


def question_corpus(profile: Profile, languages: Sequence[str], exclude: dict[str, list[str]] | None = None
                    ) -> dict[str, list[str]]:
    """More MLM text per language: the training part's questions and MKQA's, evaluation text and
    any text in ``exclude`` (e.g. the held-out MLM text) removed, in a seeded order, at most
    ``adapters.max_texts_per_language`` (notebook 03 §3)."""
    train = training_set(profile) if profile.train_dataset in ("mlqa-r", "xquad-r") else None
    eval_texts = evaluation_texts(profile)
    out = {}
    for lang in language_tuple(languages, "adapter languages"):
        texts = train.queries.text[train.queries.lang == lang].tolist() if train is not None else []
        texts += list(mkqa_questions(lang).values()) if lang in MKQA_LANGS else []
        skip = eval_texts | {normalise_text(t) for t in (exclude or {}).get(lang, [])}
        texts = list(dict.fromkeys(t for t in texts if normalise_text(t) not in skip))
        rng = np.random.default_rng(derived_seed(profile.seed, "mlm-questions", lang))
        out[lang] = [texts[i] for i in rng.permutation(len(texts))][: profile.adapters.max_texts_per_language]
    return out


def first_texts(texts: dict[str, list[str]], limit: int | None) -> dict[str, list[str]]:
    """The first ``limit`` texts of each language (all with ``None``): of a seeded order, a seeded
    sample (notebook 03 §3)."""
    return {lang: list(v if limit is None else v[:limit]) for lang, v in texts.items()}


def split_heldout(corpus: dict[str, list[str]], fraction: float) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(training text, held-out text) per language: the last ``fraction`` of each (already shuffled) list
    (notebook 03 §2)."""
    train, held = {}, {}
    for lang, texts in corpus.items():
        n_held = max(1, round(fraction * len(texts)))
        train[lang], held[lang] = texts[:-n_held], texts[-n_held:]
    return train, held
