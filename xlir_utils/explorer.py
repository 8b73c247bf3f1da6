"""The retrieval explorer of notebook 06: one question, two systems, their top-k side by side.

:class:`Explorer` holds each system's stored evaluation embeddings of one retrieval set
(notebook 04's store; candidates are never encoded again) and a way to encode a typed question
on the fly. :meth:`Explorer.explore` ranks the candidate pool (optionally restricted to some
languages) for a question and returns a tidy table; when the question is one of the set's own
queries its relevant parallel answers are marked and :meth:`Explorer.parallel_answer_ranks`
gives their ranks in each system. :func:`load_explorer` builds the explorer from a profile's
runs; :mod:`xlir_utils.explorer_view` draws the comparison and the widget.

Ranks follow the evaluation engine's pessimistic rule
(:func:`xlir_utils.metrics.ranking.pessimistic_order`): by decreasing cosine score, a relevant
answer after every non-relevant candidate with the same score; so a parallel answer's rank here
is its rank in notebook 04's evaluation.
"""
from __future__ import annotations

import inspect
import logging
import numbers
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .lir import fit_language_directions, remove_language_information
from .metrics.ranking import pessimistic_order
from .systems.record import SPEC_COLUMNS, SystemSpec

logger = logging.getLogger(__name__)

__all__ = ["Explorer", "ExplorerSystem", "Question", "UnknownSystemError", "guess_language", "load_explorer"]

RESULT_COLUMNS = ["system", "rank", "lang", "text", "score", "relevant", "candidate_id"]

# Scripts that name one of the kit's languages (Latin-script text is read as English unless told).
_SCRIPT_LANG = (("ARABIC", "ar"), ("DEVANAGARI", "hi"), ("GREEK", "el"), ("CYRILLIC", "ru"), ("THAI", "th"),
                ("CJK", "zh"), ("HIRAGANA", "zh"), ("KATAKANA", "zh"))


def guess_language(text: str, default: str = "en") -> str:
    """The language a typed question's script points to (ar, hi, el, ru, th, zh), else ``default``.

    A script guess only: German, Spanish, Turkish and Vietnamese share the Latin script, so pass
    ``query_lang`` for them (it matters for LIR and per-language adapters, not for plain encoders).
    """
    counts: dict[str, int] = {}
    for ch in text:
        if not ch.isalpha():
            continue
        name = unicodedata.name(ch, "")
        for script, lang in _SCRIPT_LANG:
            if name.startswith(script):
                counts[lang] = counts.get(lang, 0) + 1
                break
    return max(counts, key=counts.get) if counts else default


class UnknownSystemError(KeyError, ValueError):
    """A system label the explorer does not hold (a KeyError and a ValueError); the message lists
    the labels it does hold."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _names(value, what: str) -> list[str] | None:
    """``value`` as a list of names: one string is one name (never its letters); None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value] if value else []
    try:
        names = list(value)
    except TypeError:
        raise ValueError(f"{what} must be a name or a list of names, got {value!r}") from None
    bad = [x for x in names if not isinstance(x, str)]
    if bad:
        raise ValueError(f"{what} must be names (strings), got {bad!r}")
    return names


def _top_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be a whole number of at least 1 (the number of candidates to show), got {k!r}")
    return int(k)


@dataclass(frozen=True)
class ExplorerSystem:
    """One system as the explorer sees it: its stored embeddings and a typed-question encoder."""

    label: str
    spec: SystemSpec  # what the system is (family, sampling, α, adapters, post-hoc method)
    queries: np.ndarray  # (n_queries, dim), L2-normalised, in the retrieval set's query order
    candidates: np.ndarray  # (n_candidates, dim), L2-normalised
    encode_query: Callable[[str, str], np.ndarray]  # (text, lang) -> (dim,) L2-normalised


@dataclass(frozen=True)
class Question:
    """A resolved question: its text and language, and its position among the set's queries
    (``None`` for a typed question that is not one of them)."""

    text: str
    lang: str
    index: int | None = None
    query_id: str | None = None


class Explorer:
    """Explore one retrieval set's rankings under several systems (notebook 06)."""

    def __init__(self, rset, systems: Sequence[ExplorerSystem]):
        if not systems:
            raise ValueError("the explorer needs at least one system: run notebook 04 first, which evaluates "
                             "and stores every system's embeddings")
        for s in systems:
            if s.queries.shape[0] != len(rset.queries) or s.candidates.shape[0] != len(rset.candidates):
                raise ValueError(f"system {s.label!r}: embeddings of {s.queries.shape[0]} queries and "
                                 f"{s.candidates.shape[0]} candidates do not match {rset.name} "
                                 f"({len(rset.queries)} and {len(rset.candidates)}); rerun notebook 04")
        self.rset = rset
        self.systems = {s.label: s for s in systems}
        if len(self.systems) != len(systems):
            raise ValueError("system labels must be unique")
        self._ids = {qid: i for i, qid in enumerate(rset.queries.query_id)}
        self._texts: dict[tuple[str, str], int] = {}
        for i, (text, lang) in enumerate(zip(rset.queries.text, rset.queries.lang)):
            self._texts.setdefault((text.strip(), lang), i)

    @property
    def labels(self) -> list[str]:
        """The systems' labels, in the order given."""
        return list(self.systems)

    def label_of(self, **columns) -> str | None:
        """The first system whose spec has these column values, e.g. ``label_of(family="zero-shot")``
        or ``label_of(sampling="hybrid", alpha=0.5, post_hoc=None)``; None if there is none
        (notebook 06 §1)."""
        unknown = set(columns) - set(SPEC_COLUMNS)
        if unknown:
            raise ValueError(f"no system column {sorted(unknown)}: choose from {SPEC_COLUMNS}")
        return next((s.label for s in self.systems.values()
                     if all(getattr(s.spec, k) == v for k, v in columns.items())), None)

    @property
    def languages(self) -> tuple[str, ...]:
        """The candidate languages of the set."""
        return tuple(self.rset.languages)

    def question(self, query: str | int, query_lang: str | None = None) -> Question:
        """Resolve a query: a position or ``query_id`` of the set, a typed text that is one of the
        set's questions (then relevance is known), or any other text in any language."""
        q = self.rset.queries
        if isinstance(query, (int, np.integer)):
            if not 0 <= int(query) < len(q):
                raise IndexError(f"query position {query} is outside 0..{len(q) - 1} of {self.rset.name}")
            i = int(query)
            return Question(q.text.iat[i], q.lang.iat[i], i, q.query_id.iat[i])
        if not isinstance(query, str) or not query.strip():
            raise ValueError("type a question (any language) or pass a query id or position of the set")
        if query in self._ids:
            return self.question(self._ids[query])
        text = query.strip()
        langs = [query_lang] if query_lang else [guess_language(text), *self.languages]
        for lang in langs:
            if (text, lang) in self._texts:
                return self.question(self._texts[(text, lang)])
        return Question(text, query_lang or guess_language(text))

    def _languages(self, languages: str | Sequence[str] | None) -> tuple[str, ...]:
        """The candidate-language filter as a tuple (() = every language); one string is one
        language; a language the set lacks raises a ValueError listing the set's languages."""
        names = _names(languages, "languages") or []
        unknown = sorted(set(names) - set(self.languages))
        if unknown:
            raise ValueError(f"no candidates in {unknown} in {self.rset.name}; choose from {list(self.languages)} "
                             "(or None for every language)")
        return tuple(dict.fromkeys(names))

    def _pool(self, languages: str | Sequence[str] | None) -> np.ndarray:
        languages = self._languages(languages)
        if not languages:
            return np.arange(len(self.rset.candidates))
        return np.flatnonzero(self.rset.candidates.lang.isin(list(languages)).to_numpy())

    def system_labels(self, systems: str | Sequence[str]) -> list[str]:
        """The systems to compare as a list of labels (one string is one label; notebook 06 §2);
        none, or a label the explorer lacks, raises an error naming the labels it holds."""
        labels = _names(systems, "systems")
        if not labels:
            raise ValueError(f"name at least one system to compare; the explorer holds {self.labels}")
        for label in labels:
            self._system(label)
        return labels

    def _system(self, label: str) -> ExplorerSystem:
        try:
            return self.systems[label]
        except KeyError:
            raise UnknownSystemError(f"no system {label!r} in the explorer; choose from {self.labels}") from None

    def _scores(self, system: ExplorerSystem, question: Question, pool: np.ndarray) -> np.ndarray:
        if question.index is not None:
            qv = system.queries[question.index]
        else:
            qv = np.asarray(system.encode_query(question.text, question.lang), dtype=np.float32).reshape(-1)
        return system.candidates[pool] @ qv

    def _order(self, scores: np.ndarray, pool: np.ndarray, question: Question) -> np.ndarray:
        """Pool slots in the engine's ranking of ``scores`` (the module's rank rule)."""
        return pessimistic_order(scores, np.flatnonzero(np.isin(pool, self._relevant(question))))

    def _relevant(self, question: Question) -> np.ndarray:
        if question.index is None:
            return np.array([], dtype=np.int64)
        return np.asarray(self.rset.relevant[question.index], dtype=np.int64)

    def explore(self, query: str | int, systems: str | Sequence[str], k: int = 10,
                languages: str | Sequence[str] | None = None, query_lang: str | None = None) -> pd.DataFrame:
        """The top ``k`` candidates of each system for one question (notebook 06 §2).

        Args:
            query: a row of the set's queries (an int), one of its questions' texts, or any typed
                question (encoded on the fly by each system, outside the disk cache).
            systems: labels of the explorer's systems (one string is one label).
            k: how many candidates per system (a whole number ≥ 1).
            languages: restricts the candidate pool: a code such as ``"de"``, a list of codes, or
                None for every language.
            query_lang: the language of a typed question (guessed from its script if None;
                :func:`guess_language`).

        Returns:
            A table with :data:`RESULT_COLUMNS`, ``k`` rows per system in rank order (ties ranked
            as the evaluation engine ranks them); ``relevant`` marks the question's parallel
            answers, NA for a question that is not one of the set's.

        Example::

            explorer = load_explorer(cfg, dataset="xquad-r")
            explorer.explore("Who won Super Bowl 50?", explorer.labels[:2], k=5, languages=["en", "de"])
        """
        k = _top_k(k)
        systems = self.system_labels(systems)
        languages = self._languages(languages)
        question = self.question(query, query_lang)
        pool = self._pool(languages)
        rel = set(self._relevant(question).tolist())
        cands = self.rset.candidates
        frames = []
        for label in systems:
            scores = self._scores(self._system(label), question, pool)
            top = self._order(scores, pool, question)[:k]
            pos = pool[top]
            ranks = np.arange(1, len(top) + 1)
            frames.append(pd.DataFrame({
                "system": label, "rank": ranks, "lang": cands.lang.to_numpy()[pos],
                "text": cands.sentence.to_numpy()[pos], "score": scores[top].astype(float),
                "relevant": pd.array([p in rel for p in pos] if question.index is not None else [pd.NA] * len(pos),
                                     dtype="boolean"),
                "candidate_id": cands.candidate_id.to_numpy()[pos]}))
        out = pd.concat(frames, ignore_index=True)
        out.attrs.update(question=question, k=k, languages=languages)
        return out

    def parallel_answer_ranks(self, query: str | int, systems: str | Sequence[str],
                              languages: str | Sequence[str] | None = None,
                              query_lang: str | None = None) -> pd.DataFrame:
        """Where each relevant parallel answer lands in each system's ranking of the pool (one row
        per answer: its language and text, then a rank column per system; NA outside the pool).
        Empty for a question that is not one of the set's (notebook 06 §2)."""
        systems = self.system_labels(systems)
        question = self.question(query, query_lang)
        rel = self._relevant(question)
        cands = self.rset.candidates
        out = pd.DataFrame({"lang": cands.lang.to_numpy()[rel], "text": cands.sentence.to_numpy()[rel]})
        pool = self._pool(languages)
        if not len(rel):  # a typed question: nothing to rank, nothing to encode
            return out.assign(**{label: pd.array([], dtype="Int64") for label in systems})
        in_pool = np.isin(rel, pool)
        slot = np.searchsorted(pool, rel[in_pool])  # pool is sorted: each in-pool answer's place in it
        for label in systems:
            scores = self._scores(self._system(label), question, pool)
            rank_of = np.empty(len(pool), dtype=np.int64)
            rank_of[self._order(scores, pool, question)] = np.arange(1, len(pool) + 1)
            ranks = pd.array([pd.NA] * len(rel), dtype="Int64")
            ranks[in_pool] = rank_of[slot]
            out[label] = ranks
        return out

    def language_mix(self, results: pd.DataFrame) -> pd.DataFrame:
        """Per system, each language's share of the top k beside its share of the pool (notebook 06 §2)."""
        pool = self._pool(results.attrs.get("languages") or None)
        pool_share = self.rset.candidates.lang.iloc[pool].value_counts(normalize=True)
        rows = []
        for label, sub in results.groupby("system", sort=False):
            top = sub.lang.value_counts(normalize=True)
            for lang in [x for x in self.languages if x in pool_share.index]:
                rows.append({"system": label, "lang": lang, "top_k_share": float(top.get(lang, 0.0)),
                             "pool_share": float(pool_share[lang])})
        return pd.DataFrame(rows)

    def example_questions(self, languages: str | Sequence[str] = ("en", "el", "zh"),
                          seed: int = 13) -> list[Question]:
        """One question per language, of different questions, drawn with ``seed`` (notebook 06 §3)."""
        languages = _names(languages, "languages") or []
        q = self.rset.queries
        rng = np.random.default_rng(seed)
        used: set[str] = set()
        out = []
        for lang in languages:
            rows = np.flatnonzero((q.lang == lang).to_numpy() & ~q.question_id.isin(used).to_numpy())
            if rows.size == 0:
                continue
            i = int(rng.choice(rows))
            used.add(q.question_id.iat[i])
            out.append(self.question(i))
        return out


def _takes_cache(fn) -> bool:
    """True when ``fn`` accepts a ``cache`` keyword (the kit's encode functions do)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "cache" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


class _LoadedModel:
    """The one system model the explorer holds: a typed question loads its system's model and lets
    the previous one go (notebook 06 §2)."""

    def __init__(self):
        self.slot = None

    def use(self, slot) -> None:
        if self.slot is not None and self.slot is not slot:
            self.slot.release()
        self.slot = slot


def _from_system(system, q: np.ndarray, c: np.ndarray, loaded: _LoadedModel | None = None) -> ExplorerSystem:
    # a typed question is encoded once and thrown away: it stays out of the on-disk embedding cache
    options = {"cache": False} if _takes_cache(system.encode) else {}

    def encode_query(text: str, lang: str) -> np.ndarray:
        if loaded is not None and getattr(system, "slot", None) is not None:
            loaded.use(system.slot)
        return system.encode([text], [lang], "query", **options)[0]

    return ExplorerSystem(system.label, system.spec, q, c, encode_query)


def _with_lir(base: ExplorerSystem, rset, rank: int) -> ExplorerSystem:
    """``base`` after LIR of ``rank`` (:mod:`xlir_utils.lir`, as notebook 05 §5 applies it): the
    directions are fitted on the set's queries and candidates, and a typed question is projected
    with them too."""
    from .post_hoc import lir_label, lir_spec  # lazy: post_hoc loads the evaluation and store layers

    q_langs, c_langs = rset.queries.lang.to_numpy(), rset.candidates.lang.to_numpy()
    dirs = fit_language_directions(base.queries, q_langs, base.candidates, c_langs, rank)
    q = remove_language_information(base.queries, q_langs, dirs)
    c = remove_language_information(base.candidates, c_langs, dirs)

    def encode_query(text: str, lang: str) -> np.ndarray:
        v = np.asarray(base.encode_query(text, lang), dtype=np.float32)[None, :]
        return remove_language_information(v, [lang], dirs)[0]

    return ExplorerSystem(lir_label(base.label, rank), lir_spec(base.spec, rank), q, c,
                          encode_query)


def load_explorer(profile, dataset: str = "xquad-r", *, seed: int | None = None, lir_rank: int | None = 1,
                  families: Sequence[str] = ("zero-shot", "full", "code-switching", "adapters")) -> Explorer:
    """An explorer over ``dataset`` with the profile's systems of ``families`` at one training seed
    (default the profile's first seed), each also with LIR of ``lir_rank`` (None: none).
    Embeddings come from notebook 04's store (encoded and stored if absent), one model in memory
    at a time; afterwards a system's model is loaded only when a typed question needs it, and the
    previous one is let go (notebook 06 §1)."""
    # lazy: discovery loads torch, the encoders and AdapterHub; the explorer's own logic needs none
    from .data.datasets import retrieval_set
    from .systems import (
        adapter_run_systems,
        baseline_systems,
        code_switching_systems,
        embed_retrieval_set,
        full_run_systems,
        one_model_at_a_time,
    )

    one_seed = profile.replace(seeds=(seed if seed is not None else profile.seeds[0],))
    found = []
    if "zero-shot" in families:
        found += baseline_systems(profile)
    if "full" in families:
        found += full_run_systems(one_seed)
    if "code-switching" in families:
        found += code_switching_systems(one_seed)
    if "adapters" in families:
        found += adapter_run_systems(one_seed)
    rset = retrieval_set(profile, dataset)
    systems, loaded = [], _LoadedModel()
    for s in one_model_at_a_time(found):
        q, c = embed_retrieval_set(s, rset, profile.candidate_text, profile.name)
        systems.append(_from_system(s, q, c, loaded))
    if lir_rank:
        systems += [_with_lir(s, rset, lir_rank) for s in list(systems)]
    logger.info("explorer over %s: %d systems", dataset, len(systems))
    return Explorer(rset, systems)
