"""MKQA's development questions as re-split by the MIA 2022 shared task (notebooks 01 and 03).

1,758 Natural Questions queries, human-translated and parallel across 12 languages; of the 11
XQuAD-R languages it has ar, en, es, ru, tr and zh (:data:`MKQA_LANGS`). The kit uses the
questions as text, never as an evaluation set: monolingual text for language adapters and
parallel questions for bilingual lexicons. None of them is an XQuAD-R or MLQA-R question or
sentence (``shared/data/mkqa-mia-dev/SOURCES.md`` records the check).
"""
from __future__ import annotations

from ..errors import SettingsError
from .fetch import fetch
from .jsonl import json_lines
from .registry import MKQA_FILES

MKQA_LANGS = tuple(MKQA_FILES)


def mkqa_questions(lang: str) -> dict[str, str]:
    """{example id: question} of one language, in file order (the id is shared across languages)."""
    if lang not in MKQA_FILES:
        raise SettingsError(f"MKQA has no questions in {lang!r}; of the kit's languages it has "
                            f"{', '.join(MKQA_LANGS)}.")
    code = MKQA_FILES[lang][0]
    out = {}
    for _, record in json_lines(fetch(f"mkqa-mia-dev/mkqa-{code}.jsonl"), "an MKQA question"):
        question = " ".join(str(record.get("question") or "").split())
        if question:
            key = str(record["id"])
            out[key[: -len(code) - 1] if key.endswith(f"_{code}") else key] = question
    return out


def mkqa_parallel(source: str, target: str) -> list[tuple[str, str]]:
    """(source question, target question) pairs with the same example id, in the source file's order."""
    src, tgt = mkqa_questions(source), mkqa_questions(target)
    return [(text, tgt[key]) for key, text in src.items() if key in tgt]
