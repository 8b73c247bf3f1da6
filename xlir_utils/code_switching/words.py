"""Words of a text, with their character spans, for lexicon induction and code-switching
(notebook 01 §6, notebook 02 §7).

Chinese is segmented with jieba and Thai with PyThaiNLP (their scripts put no spaces between
words); every other language splits on runs of letters, marks and digits. Lexicon keys are
lower-cased words.
"""
from __future__ import annotations

import logging
from functools import lru_cache

import regex

__all__ = ["UNSPACED", "word_spans", "words"]

UNSPACED = ("zh", "th")  # scripts that write words without spaces between them
_WORD = regex.compile(r"[\p{L}\p{M}\p{N}]+")


@lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


def word_spans(text: str, lang: str) -> list[tuple[int, int]]:
    """(start, end) of every word of ``text`` in ``lang``, in order; punctuation and spaces are
    not words."""
    if lang == "zh":
        return [(s, e) for w, s, e in _jieba().tokenize(text) if _WORD.fullmatch(w)]
    if lang == "th":
        from pythainlp.tokenize import word_tokenize

        spans, pos = [], 0
        for w in word_tokenize(text, keep_whitespace=True):
            start = text.find(w, pos)
            if start < 0:  # a token the segmenter normalised: skip it
                continue
            if _WORD.fullmatch(w):
                spans.append((start, start + len(w)))
            pos = start + len(w)
        return spans
    return [m.span() for m in _WORD.finditer(text)]


def words(text: str, lang: str) -> list[str]:
    """The lower-cased words of ``text`` (lexicon keys)."""
    return [text[s:e].lower() for s, e in word_spans(text, lang)]
