"""Code-switching training text (Litschko, Artemova & Plank 2023): each word with a lexicon
entry is replaced, with probability ``p``, by its translation (notebook 02 §7).

* **bilingual** (CS): one target language per text, drawn among the other training languages;
* **multilingual** (ML-CS): a target language drawn per word.

English words translate through the English–target lexicon; words of another language X
through X's lexicon into English, and on to the target through the target's lexicon when the
target is not English (a pivot). A word with no translation into the drawn target stays as it
is. Only X-X rows of a pairs table change (query and passage in one language), on the query
side, the passage side or both: X-X batches become code-switched, X-Y batches stay as they
are. Every text's draws come from its own seed (the run's seed, the row's question, languages
and side), so the output does not depend on row order or on other rows.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..seeding import derived_seed
from .lexicon import Lexicon
from .words import UNSPACED, word_spans

__all__ = ["MODES", "SIDES", "CodeSwitching", "Translator", "code_switch", "code_switch_pairs"]

MODES = ("bilingual", "multilingual")
SIDES = ("query", "passage", "both")


@dataclass(frozen=True)
class CodeSwitching:
    """A code-switching setting (notebook 02 §7): probability ``p`` per word, ``mode``
    (:data:`MODES`), ``side`` (:data:`SIDES`)."""

    p: float
    mode: str = "multilingual"
    side: str = "both"

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.p) <= 1.0:
            raise ValueError(f"code-switching probability {self.p!r} is not in [0, 1]")
        if self.mode not in MODES:
            raise ValueError(f"unknown code-switching mode {self.mode!r}: choose one of {MODES}")
        if self.side not in SIDES:
            raise ValueError(f"unknown code-switching side {self.side!r}: choose one of {SIDES}")

    @property
    def key(self) -> str:
        """A short, stable name (run records, tables): ``ML-CS p=0.5 both``."""
        return f"{'ML-CS' if self.mode == 'multilingual' else 'CS'} p={self.p:g} {self.side}"


class Translator:
    """Word translation between the training languages through English–X lexicons (notebook
    02 §7): directly to and from English, through English between two other languages."""

    def __init__(self, lexicons: Mapping[str, Lexicon]):
        self.from_en = {lang: lex.translations("from_en") for lang, lex in lexicons.items()}
        self.to_en = {lang: lex.translations("to_en") for lang, lex in lexicons.items()}

    def translate(self, word: str, source: str, target: str) -> str | None:
        """``word`` (lower-cased) of ``source`` in ``target``, or None without an entry."""
        if source == target:
            return None
        english = word if source == "en" else self.to_en.get(source, {}).get(word)
        if english is None or target == "en":
            return english
        return self.from_en.get(target, {}).get(english)


def code_switch(text: str, lang: str, translator: Translator, targets: Sequence[str], p: float, mode: str,
                rng: np.random.Generator) -> tuple[str, int]:
    """(``text`` of ``lang`` with each translatable word replaced with probability ``p`` by its
    translation into a target language, the number of words replaced) (:data:`MODES`;
    ``targets``: the candidates, ``lang`` excluded). ``p = 0`` returns ``text`` itself."""
    choices = [t for t in targets if t != lang]
    if p <= 0 or not choices:
        return text, 0
    spans = word_spans(text, lang)
    fixed = choices[int(rng.integers(len(choices)))] if mode == "bilingual" else None
    out, last = [], 0
    for start, end in spans:
        target = fixed or choices[int(rng.integers(len(choices)))]
        switch = rng.random() < p  # drawn for every word, so one word's draw never shifts another's
        new = translator.translate(text[start:end].lower(), lang, target) if switch else None
        if new is None:
            continue
        if lang in UNSPACED and target not in UNSPACED:  # keep a spaced-script word apart from its neighbours
            new = f" {new} "
        out += [text[last:start], new]
        last = end
    out.append(text[last:])
    switched = (len(out) - 1) // 2
    return (" ".join("".join(out).split()) if lang in UNSPACED else "".join(out)), switched


def code_switch_pairs(pairs: pd.DataFrame, setting: CodeSwitching, translator: Translator, languages: Sequence[str],
                      seed: int) -> pd.DataFrame:
    """``pairs`` with the X-X rows' query, passage or both code-switched into ``languages``
    (notebook 02 §7); X-Y rows and row order unchanged. Adds ``switched_words``: how many
    words changed in the row (0 on X-Y rows)."""
    out = pairs.copy()
    sides = ("query", "passage") if setting.side == "both" else (setting.side,)
    changed = np.zeros(len(out), dtype=np.int64)
    mono = (out.query_lang == out.passage_lang).to_numpy()
    for side in sides:
        lang_col = "query_lang" if side == "query" else "passage_lang"
        texts = out[side].to_numpy(dtype=object).copy()
        for i in np.flatnonzero(mono):
            lang = out[lang_col].iat[i]
            rng = np.random.default_rng(derived_seed(seed, "code-switch", str(out.question_id.iat[i]), lang, side))
            texts[i], n = code_switch(texts[i], lang, translator, languages, setting.p, setting.mode, rng)
            changed[i] += n
        out[side] = texts
    return out.assign(switched_words=changed)

