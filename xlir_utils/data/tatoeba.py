"""Tatoeba, XTREME-R's sentence-retrieval test (LASER ``data/tatoeba/v1``; notebook 04 §8).

Up to 1,000 English sentences per language with their translations, aligned line by line. The
offline data directory holds the 10 XQuAD-R languages other than English; online, the registry
covers all 41 XTREME-R languages at a pinned LASER commit, sha256-checked like every file.
Tatoeba is an evaluation set: none of its sentences may be training text
(:func:`tatoeba_texts` feeds the leakage checks).
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ..errors import SettingsError
from .fetch import DataError, fetch
from .registry import language_tuple, tatoeba_file
from .tatoeba_files import TATOEBA_XQUAD_R, TATOEBA_XTREME_R


def _lines(path) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return [line.rstrip("\n").strip() for line in handle]


def tatoeba_pairs(lang: str) -> pd.DataFrame:
    """The aligned test pairs of one language: columns ``lang``, ``en``, ``xx`` (row *i* = line *i*; notebook 04 §1)."""
    xx = _lines(fetch(f"tatoeba-laser/{tatoeba_file(lang, lang)}"))
    en = _lines(fetch(f"tatoeba-laser/{tatoeba_file(lang, 'en')}"))
    expected = TATOEBA_XTREME_R[lang][3]
    if not len(xx) == len(en) == expected:
        raise DataError(f"Tatoeba {lang}: {len(xx)} and {len(en)} lines, expected {expected} aligned pairs")
    return pd.DataFrame({"lang": lang, "en": en, "xx": xx})


def tatoeba_languages(languages: Sequence[str] | None = None) -> tuple[str, ...]:
    """Tatoeba languages to evaluate: ``languages``, or the XQuAD-R ones (all offline)."""
    langs = language_tuple(languages if languages is not None else TATOEBA_XQUAD_R, "Tatoeba languages")
    unknown = [x for x in langs if x not in TATOEBA_XTREME_R]
    if unknown:
        raise SettingsError(f"Tatoeba has no XTREME-R language {unknown}; it has {', '.join(sorted(TATOEBA_XTREME_R))}.")
    return langs


def tatoeba_texts(languages: Sequence[str] | None = None) -> list[str]:
    """Every sentence (both sides) of the Tatoeba languages: text no training may contain."""
    out: list[str] = []
    for lang in tatoeba_languages(languages):
        pairs = tatoeba_pairs(lang)
        out += pairs.en.tolist() + pairs.xx.tolist()
    return out
