"""Parse LAReQA's XQuAD-R / MLQA-R JSON into a retrieval set (queries, candidates, relevance).

The protocol follows LAReQA's reference code (XTREME-R ``third_party/utils_lareqa.py``):

* a candidate is one sentence of a paragraph, its text ``context[start:end]`` from
  ``sentence_breaks`` (one Turkish XQuAD-R paragraph has a ``sentences`` entry that differs
  from its span by one character; the span is what LAReQA uses);
* only paragraphs that have questions contribute candidates;
* the relevant sentence of a question in a language is the one whose span holds that
  language's answer start; relevance crosses languages through the question id.

Deviation, for robustness: an answer start falling on the whitespace between two spans is
mapped to the next sentence (LAReQA would drop the question). The released files have no
such case, so the counts equal LAReQA's exactly.
"""
from __future__ import annotations

import json
from bisect import bisect_right
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import SettingsError
from .fetch import DataError, fetch
from .registry import check_languages, lareqa_file

EXPECTED_COUNTS = {  # (queries, candidates) of the full sets, as published by LAReQA
    "xquad-r": (13090, 13014),
    "mlqa-r": (4199, 20534),
}


@dataclass(frozen=True)
class RetrievalSet:
    """Queries, candidates and cross-language relevance of one LAReQA dataset."""

    name: str
    languages: tuple[str, ...]
    queries: pd.DataFrame  # query_id, question_id, lang, text
    candidates: pd.DataFrame  # candidate_id, lang, sentence, context, article, title, paragraph, sentence_index
    relevant: list[np.ndarray] = field(repr=False)  # per query: candidate positions, all languages

    def candidate_texts(self, mode: str = "sentence") -> list[str]:
        """Candidate texts to encode: ``sentence`` alone or ``sentence+context`` (LAReQA)."""
        if mode == "sentence":
            return self.candidates["sentence"].tolist()
        if mode == "sentence+context":
            return [f"{s}\n{c}" for s, c in zip(self.candidates["sentence"], self.candidates["context"])]
        raise SettingsError(f"Unknown candidate text mode {mode!r}; use 'sentence' or 'sentence+context'.")

    def qrels(self) -> pd.DataFrame:
        """Relevance as a long table (query_id, candidate_id)."""
        rows = [(self.queries.query_id.iat[i], self.candidates.candidate_id.iat[j])
                for i, rel in enumerate(self.relevant) for j in rel]
        return pd.DataFrame(rows, columns=["query_id", "candidate_id"])

    def parallel_answers(self, question_id: str) -> pd.DataFrame:
        """One question in every language beside its relevant answer sentence."""
        rows = []
        for i in np.flatnonzero(self.queries.question_id.to_numpy() == question_id):
            lang = self.queries.lang.iat[i]
            rel = self.candidates.iloc[self.relevant[i]]
            rows.append({"lang": lang, "question": self.queries.text.iat[i],
                         "answer sentence": rel[rel.lang == lang].sentence.iat[0]})
        if not rows:
            raise KeyError(f"question id {question_id!r} is not in {self.name}")
        return pd.DataFrame(rows).set_index("lang")

    def first_questions(self, n: int | None) -> "RetrievalSet":
        """The set with only its first ``n`` questions (in order of appearance), in every language;
        the candidate pool stays whole (None: the set itself)."""
        kept = list(dict.fromkeys(self.queries.question_id))[:n] if n is not None else None
        if kept is None or len(kept) == self.queries.question_id.nunique():
            return self
        rows = np.flatnonzero(self.queries.question_id.isin(kept).to_numpy())
        return replace(self, queries=self.queries.iloc[rows].reset_index(drop=True),
                       relevant=[self.relevant[i] for i in rows])

    def counts(self) -> pd.DataFrame:
        """Per-language counts of queries and candidates."""
        q = self.queries.groupby("lang").size().rename("queries")
        c = self.candidates.groupby("lang").size().rename("candidates")
        return pd.concat([q, c], axis=1).reindex(list(self.languages)).fillna(0).astype(int)


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path} is not valid JSON ({exc}). The file is truncated or corrupt: delete it and "
            "fetch it again (its checksum is verified on fetch)."
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DataError(f"{path} is not in SQuAD format (no top-level 'data' list); is it a LAReQA file?")
    return data


def _sentence_of(breaks: list[list[int]], answer_start: int) -> int | None:
    """Index of the span holding ``answer_start``; whitespace between spans → next span."""
    starts = [s for s, _ in breaks]
    i = bisect_right(starts, answer_start) - 1
    if i >= 0 and breaks[i][0] <= answer_start < breaks[i][1]:
        return i
    return i + 1 if i + 1 < len(breaks) else None


def parse_language(data: dict, lang: str, keep_ids: set[str] | None = None):
    """Yield ``(question rows, candidate rows, answer map)`` for one language's SQuAD JSON.

    The answer map sends a question id to the position (in this language's candidate rows)
    of its answer sentence.
    """
    questions, candidates, answer_pos = [], [], {}
    for a_idx, article in enumerate(data["data"]):
        for p_idx, para in enumerate(article["paragraphs"]):
            qas = [q for q in para["qas"] if keep_ids is None or q["id"] in keep_ids]
            if not qas:
                continue
            context, breaks = para["context"], para["sentence_breaks"]
            first = len(candidates)
            for s_idx, (start, end) in enumerate(breaks):
                candidates.append({
                    "candidate_id": f"{lang}:{a_idx}:{p_idx}:{s_idx}", "lang": lang,
                    "sentence": context[start:end], "context": context, "article": a_idx,
                    "title": article.get("title", ""), "paragraph": p_idx, "sentence_index": s_idx,
                })
            for qa in qas:
                s_idx = _sentence_of(breaks, qa["answers"][0]["answer_start"])
                if s_idx is None:
                    raise DataError(f"{lang} question {qa['id']}: answer start beyond the last sentence")
                answer_pos[qa["id"]] = first + s_idx
                questions.append({"query_id": f"{lang}:{qa['id']}", "question_id": qa["id"],
                                  "lang": lang, "text": qa["question"]})
    return questions, candidates, answer_pos


@dataclass(frozen=True)
class Split:
    """A held-out part of a LAReQA set, by English article (every language of a question id
    goes with its article): ``part`` "dev" holds a seeded share ``fraction`` of the articles
    (at least one), "train" the rest. The dev part of MLQA-R is the kit's development set."""

    part: str  # "train" | "dev"
    fraction: float
    seed: int

    def __post_init__(self):
        if self.part not in ("train", "dev"):
            raise SettingsError(f"split part must be 'train' or 'dev', got {self.part!r}")
        if not 0 < self.fraction < 1:
            raise SettingsError(f"split fraction must be in (0, 1), got {self.fraction!r}")

    def dev_articles(self, n_articles: int) -> set[int]:
        """The article positions (in the English file) held out as dev."""
        if n_articles < 2:
            raise SettingsError(f"a dev split needs at least 2 articles, got {n_articles}")
        n_dev = min(n_articles - 1, max(1, round(self.fraction * n_articles)))
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0xDE5]))
        return set(rng.permutation(n_articles)[:n_dev].tolist())


def _article_ids(data: dict, articles) -> set[str]:
    return {qa["id"] for a_idx, article in enumerate(data["data"]) if a_idx in articles
            for para in article["paragraphs"] for qa in para["qas"]}


def kept_question_ids(anchor: dict, articles: int | None, split: Split | None) -> set[str] | None:
    """The question ids of the first ``articles`` English articles (all if None), restricted to
    one part of ``split``; None when nothing is restricted."""
    if articles is None and split is None:
        return None
    n = len(anchor["data"]) if articles is None else min(articles, len(anchor["data"]))
    chosen = set(range(n))
    if split is not None:
        dev = split.dev_articles(n)
        chosen = dev if split.part == "dev" else chosen - dev
    return _article_ids(anchor, chosen)


def set_name(name: str, split: Split | None) -> str:
    """The name of a (split of a) dataset: ``mlqa-r``, ``mlqa-r-dev``, ``mlqa-r-train``."""
    return name if split is None else f"{name}-{split.part}"


def load_retrieval_set(name: str, languages=None, articles: int | None = None,
                       split: Split | None = None) -> RetrievalSet:
    """Parse a LAReQA dataset (``xquad-r`` or ``mlqa-r``) into a :class:`RetrievalSet`.

    ``articles``: keep only the question ids of the first N English articles (in every
    language, with the paragraphs that hold them); None keeps everything. ``split``: keep one
    part of a held-out split of those articles (the set is then named ``<name>-<part>``).
    """
    languages = check_languages(name, languages)
    raw = {lang: _read_json(fetch(lareqa_file(name, lang))) for lang in languages}
    anchor = raw["en"] if "en" in raw else _read_json(fetch(lareqa_file(name, "en")))
    keep = kept_question_ids(anchor, articles, split)
    queries, candidates, answer_of = [], [], {}
    for lang in languages:
        q_rows, c_rows, answers = parse_language(raw[lang], lang, keep)
        offset = len(candidates)
        queries += q_rows
        candidates += c_rows
        for qid, pos in answers.items():
            answer_of.setdefault(qid, []).append(offset + pos)
    qdf = pd.DataFrame(queries, columns=["query_id", "question_id", "lang", "text"])
    cdf = pd.DataFrame(candidates)
    relevant = [np.array(sorted(answer_of[qid]), dtype=np.int64) for qid in qdf.question_id]
    rset = RetrievalSet(set_name(name, split), languages, qdf, cdf, relevant)
    if articles is None and split is None and languages == check_languages(name, None):
        _check_counts(rset)
    return rset


def _check_counts(rset: RetrievalSet) -> None:
    expected = EXPECTED_COUNTS[rset.name]
    got = (len(rset.queries), len(rset.candidates))
    if got != expected:
        raise DataError(f"{rset.name}: parsed {got} (queries, candidates), LAReQA has {expected}.")
