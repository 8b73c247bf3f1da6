"""Bilingual lexicons English ↔ each XQuAD-R language, induced from parallel text that is never
evaluated (notebook 01 §6; used by code-switched training, notebook 02 §7).

The parallel text of English and a language X: NTREX-128 (1,997 news sentences, every
language), MKQA's questions where X has them (ar, es, ru, tr, zh) and the training split's
questions (parallel across its languages; MLQA-R's training articles in ``smoke`` and
``quick``). Pairs with a side in any evaluation set (LAReQA, Tatoeba; the dev articles
included) are dropped. Words are aligned by IBM Model 1 in both directions and symmetrised by
intersection (:mod:`.alignment`); a lexicon entry is a word pair linked at least
:data:`MIN_LINKS` times, numbers and identical strings (names, loans) left out. Lexicons are
cached under ``.cache/lexicons/<profile>/``, keyed by their input text and settings.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import regex

from .. import paths
from ..data.datasets import training_set
from ..data.mkqa import MKQA_LANGS, mkqa_parallel
from ..data.pairs import normalise_text
from ..data.parallel import ntrex_sentences
from ..keyed_arrays import cached_keyed_arrays, text_digest
from ..language_adapters.corpus import evaluation_texts
from .alignment import align_intersection
from .words import words

__all__ = ["ALIGNER", "MIN_LINKS", "Lexicon", "lexicon", "lexicon_table", "lexicons", "parallel_text", "training_lexicons"]

ALIGNER = "ibm1-intersection-v1"  # changes here rebuild every lexicon
IBM1_ITERATIONS = 5
MIN_LINKS = 2
_NUMBER = regex.compile(r"^\p{N}+$")


@dataclass(frozen=True)
class Lexicon:
    """English ↔ ``lang`` word pairs with how often both alignment directions linked them."""

    lang: str
    english: np.ndarray  # English word of each entry
    foreign: np.ndarray  # its translation in ``lang``
    links: np.ndarray  # times linked in both directions

    def __len__(self) -> int:
        return len(self.english)

    def translations(self, direction: str) -> dict[str, str]:
        """Each word's most often linked translation (ties: alphabetical): ``"from_en"`` maps
        English words to ``lang``, ``"to_en"`` the reverse (notebook 02 §7's code-switching)."""
        src, tgt = (self.english, self.foreign) if direction == "from_en" else (self.foreign, self.english)
        order = sorted(range(len(src)), key=lambda i: (src[i], -int(self.links[i]), tgt[i]))
        out: dict[str, str] = {}
        for i in order:
            out.setdefault(str(src[i]), str(tgt[i]))
        return out


def parallel_text(profile, lang: str, exclude: set[str] | None = None) -> pd.DataFrame:
    """English–``lang`` sentence pairs (``en``, ``foreign``, ``source``) from NTREX-128, MKQA and
    the training split's questions, none with a side in ``exclude`` (default: every evaluation
    text of the profile), duplicates dropped."""
    if lang == "en":
        raise ValueError("a lexicon pairs English with another language")
    exclude = evaluation_texts(profile) if exclude is None else exclude
    rows = [(e, f, "ntrex128") for e, f in zip(ntrex_sentences("en"), ntrex_sentences(lang))]
    if lang in MKQA_LANGS:
        rows += [(e, f, "mkqa") for e, f in mkqa_parallel("en", lang)]
    if profile.train_dataset in ("mlqa-r", "xquad-r"):
        q = training_set(profile).queries
        if lang in set(q.lang):
            en = q[q.lang == "en"].drop_duplicates("question_id").set_index("question_id").text
            other = q[q.lang == lang].drop_duplicates("question_id").set_index("question_id").text
            both = en.index.intersection(other.index)
            rows += [(en[i], other[i], "training questions") for i in both]
    table = pd.DataFrame(rows, columns=["en", "foreign", "source"]).drop_duplicates(["en", "foreign"])
    clean = [normalise_text(e) not in exclude and normalise_text(f) not in exclude
             for e, f in zip(table.en, table.foreign)]
    return table[clean].reset_index(drop=True)


def _induce(lang: str, text: pd.DataFrame) -> Lexicon:
    en = [words(t, "en") for t in text.en]
    foreign = [words(t, lang) for t in text.foreign]
    linked = align_intersection(en, foreign, IBM1_ITERATIONS)
    kept = sorted((e, f, n) for (e, f), n in linked.items()
                  if n >= MIN_LINKS and e != f and not _NUMBER.match(e) and not _NUMBER.match(f))
    e, f, n = zip(*kept) if kept else ((), (), ())
    return Lexicon(lang, np.array(e, dtype=str), np.array(f, dtype=str), np.array(n, dtype=np.int64))


def lexicon(profile, lang: str, exclude: set[str] | None = None) -> Lexicon:
    """The English–``lang`` lexicon of ``profile``: from the cache when it holds one built from
    the same text and settings (verified), else induced and cached (notebook 01 §6).
    ``exclude``: the evaluation texts (computed when not given)."""
    return _lexicon_of(profile, lang, parallel_text(profile, lang, exclude))


def _lexicon_of(profile, lang: str, text: pd.DataFrame) -> Lexicon:
    """The lexicon induced from ``text`` (:func:`parallel_text`), through the cache."""
    key = f"{ALIGNER}|it{IBM1_ITERATIONS}|min{MIN_LINKS}|{lang}|{text_digest([*text.en, *text.foreign])}"
    path = paths.cache_dir() / "lexicons" / profile.name / f"{lang}.npz"

    def induce() -> dict[str, np.ndarray]:
        lex = _induce(lang, text)
        return {"english": lex.english, "foreign": lex.foreign, "links": lex.links}

    stored = cached_keyed_arrays(path, key, ("english", "foreign", "links"), induce, f"the {lang} lexicon")
    return Lexicon(lang, stored["english"], stored["foreign"], stored["links"])


def lexicons(profile, languages: Sequence[str]) -> dict[str, Lexicon]:
    """The lexicon of every language of ``languages`` but English (notebooks 01 §6, 02 §7)."""
    exclude = evaluation_texts(profile)
    return {lang: lexicon(profile, lang, exclude) for lang in languages if lang != "en"}


def training_lexicons(profile) -> dict[str, Lexicon]:
    """The lexicons code-switched training uses (notebook 02 §7): every training language's but
    English's, of those the profile builds (``lexicon_languages``)."""
    built = profile.lexicon_languages
    return lexicons(profile, [lang for lang in profile.train_languages if built is None or lang in built])


def lexicon_table(profile, languages: Sequence[str]) -> pd.DataFrame:
    """Per language: parallel sentence pairs by source, lexicon entries, English words covered
    (notebook 01 §6; ``results/lexicons.csv``)."""
    exclude = evaluation_texts(profile)
    rows = []
    for lang in languages:
        if lang == "en":
            continue
        text = parallel_text(profile, lang, exclude)
        lex = _lexicon_of(profile, lang, text)
        by_source = text.source.value_counts()
        rows.append({"lang": lang, "sentence_pairs": len(text),
                     **{f"pairs_{s.replace(' ', '_')}": int(by_source.get(s, 0))
                        for s in ("ntrex128", "mkqa", "training questions")},
                     "entries": len(lex), "english_words": len(set(lex.english)),
                     "foreign_words": len(set(lex.foreign))})
    return pd.DataFrame(rows)
