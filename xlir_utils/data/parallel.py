"""Monolingual text for language adapters: NTREX-128 (11-way parallel news, notebook 03 §2).

It is not derived from XQuAD-R or MLQA-R (its provenance note records the check). Tatoeba, once
MLM text too, is an evaluation set of the kit (:mod:`xlir_utils.data.tatoeba`).
"""
from __future__ import annotations

from ..errors import SettingsError
from .fetch import fetch
from .registry import NTREX_CODES, check_languages


def _lines(path) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip()]


def ntrex_sentences(lang: str) -> list[str]:
    """The 1,997 NTREX-128 sentences of one XQuAD-R language."""
    check_languages("xquad-r", [lang])
    name = "newstest2019-src.eng.txt" if lang == "en" else f"newstest2019-ref.{NTREX_CODES[lang]}.txt"
    return _lines(fetch(f"ntrex128/{name}"))


def monolingual_text(lang: str, sources: tuple[str, ...] = ("ntrex128",),
                     extra: list[str] | None = None, limit: int | None = None) -> list[str]:
    """Sentences of one language for masked-language modelling, in a fixed order (notebook 03 §2)."""
    readers = {"ntrex128": ntrex_sentences}
    unknown = set(sources) - set(readers)
    if unknown:
        raise SettingsError(f"Unknown text source(s) {sorted(unknown)}; choose from {sorted(readers)}.")
    texts = [t for source in sources for t in readers[source](lang)] + list(extra or [])
    texts = list(dict.fromkeys(texts))
    return texts[:limit] if limit else texts
