"""MIRACL (Zhang et al. 2023), the paper's Tables 12-13: monolingual retrieval over Wikipedia
passages, dev topics and qrels (``paper`` profile; notebook 04 §9).

Read from the Hugging Face dataset repositories in their exact layouts:

* ``miracl/miracl`` (gated: accept its terms and set ``HF_TOKEN``):
  ``miracl-v1.0-<lang>/topics/topics.miracl-v1.0-<lang>-<split>.tsv`` (``qid<TAB>query``) and
  ``miracl-v1.0-<lang>/qrels/qrels.miracl-v1.0-<lang>-<split>.tsv`` (``qid<TAB>Q0<TAB>docid<TAB>rel``,
  rel 0 = judged non-relevant, 1 = relevant);
* ``miracl/miracl-corpus``: ``miracl-corpus-v1.0-<lang>/docs-<i>.jsonl.gz``, one passage per line,
  ``{"docid": "<article>#<passage>", "title": ..., "text": ...}`` (English alone: 32.9 M passages).

Files are verified like mMARCO's (:class:`xlir_utils.data.hub_files.HubDataset`): the hub's
published digests online, ``SHA256SUMS`` in ``XLIR_DATA_DIR/miracl/`` and
``XLIR_DATA_DIR/miracl-corpus/`` offline. A passage is encoded as ``title + " " + text``.
"""
from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from ..errors import SettingsError
from .fetch import DataError
from .hub_files import HubDataset
from .jsonl import json_lines

NEEDED = "MIRACL is needed only by the paper profile"
MIRACL = HubDataset("miracl/miracl", "miracl", NEEDED,
                    note=" and a Hugging Face token (HF_TOKEN) that has accepted the gated dataset's terms")
MIRACL_CORPUS = HubDataset("miracl/miracl-corpus", "miracl-corpus", NEEDED)
# corpus shards per language (ir_datasets' MIRACL metadata; the hub's file list)
CORPUS_SHARDS = {"ar": 5, "bn": 1, "de": 32, "en": 66, "es": 21, "fa": 5, "fi": 4, "fr": 30, "hi": 2, "id": 3,
                 "ja": 14, "ko": 3, "ru": 20, "sw": 1, "te": 2, "th": 2, "yo": 1, "zh": 10}
KNOWN_LANGUAGES = ("ar", "bn", "en", "es", "fa", "fi", "fr", "hi", "id", "ja", "ko", "ru", "sw", "te", "th", "zh")


def _lang(lang: str) -> str:
    if lang not in CORPUS_SHARDS:
        raise SettingsError(f"MIRACL has no language {lang!r}; it has {', '.join(sorted(CORPUS_SHARDS))}.")
    return lang


def topics_file(lang: str, split: str = "dev") -> str:
    return f"miracl-v1.0-{_lang(lang)}/topics/topics.miracl-v1.0-{lang}-{split}.tsv"


def qrels_file(lang: str, split: str = "dev") -> str:
    return f"miracl-v1.0-{_lang(lang)}/qrels/qrels.miracl-v1.0-{lang}-{split}.tsv"


def corpus_files(lang: str) -> list[str]:
    return [f"miracl-corpus-v1.0-{_lang(lang)}/docs-{i}.jsonl.gz" for i in range(CORPUS_SHARDS[lang])]


def _tsv(path, columns: int, what: str) -> list[list[str]]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for n, line in enumerate(handle, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != columns:
                raise DataError(f"{path}:{n}: expected {what} ({columns} tab-separated fields), got {line[:80]!r}")
            rows.append(parts)
    return rows


def miracl_topics(lang: str, split: str = "dev") -> pd.DataFrame:
    """The topics (queries) of one language: columns ``qid``, ``query``."""
    rows = _tsv(MIRACL.file(topics_file(lang, split)), 2, "qid<TAB>query")
    return pd.DataFrame(rows, columns=["qid", "query"])


def miracl_qrels(lang: str, split: str = "dev") -> pd.DataFrame:
    """The judgments of one language: columns ``qid``, ``docid``, ``relevance`` (0 or 1)."""
    rows = _tsv(MIRACL.file(qrels_file(lang, split)), 4, "qid<TAB>Q0<TAB>docid<TAB>relevance")
    out = pd.DataFrame([(q, d, r) for q, _, d, r in rows], columns=["qid", "docid", "relevance"])
    out["relevance"] = out.relevance.astype(int)
    return out


def miracl_corpus(lang: str, shard: int | None = None) -> Iterator[pd.DataFrame]:
    """The passages of one language, one DataFrame (``docid``, ``text``) per corpus shard, in order."""
    files = corpus_files(lang)
    for relpath in files if shard is None else [files[shard]]:
        path = MIRACL_CORPUS.file(relpath)
        docids, texts = [], []
        for n, doc in json_lines(path, "a MIRACL passage (JSON with docid, title, text)"):
            try:
                docids.append(doc["docid"])
                texts.append(f"{doc.get('title', '')} {doc['text']}".strip())
            except KeyError as exc:
                raise DataError(f"{path}, line {n}: a MIRACL passage lacks {exc}: expected JSON with docid, "
                                "title, text") from None
        yield pd.DataFrame({"docid": docids, "text": texts})
