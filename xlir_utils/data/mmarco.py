"""mMARCO (Bonifacio et al. 2021): the public part of the paper's training data (``paper`` profile).

mMARCO is MS MARCO passage ranking machine-translated into 13 languages, published as the
Hugging Face dataset ``unicamp-dl/mmarco``. Query and passage ids are shared across the
translations, so the data is *parallel through its ids*, like LAReQA through question ids.
The kit reads three kinds of upstream file, in their exact upstream formats (TSV, UTF-8):

* ``data/triples.train.ids.small.tsv``: ``qid \\t positive pid \\t negative pid`` (39.8 M
  lines, language-free);
* ``data/google/queries/train/{language}_queries.train.tsv``: ``qid \\t query``;
* ``data/google/collections/{language}_collection.tsv``: ``pid \\t passage`` (8.8 M lines,
  2.7--7.6 GB per language).

:func:`load_mmarco` subsamples ``n_queries`` training queries (seeded, among the distinct
queries of the first ``scan_lines`` triples), keeps each one's first (positive, negative)
pair, and reads only the needed ids from each language's files in one streaming pass, so
memory stays small. Queries missing or empty in any language are dropped (parallel data
only). :func:`mmarco_pairs` expands the result into the pairs table the samplers read.

Where files come from (:class:`xlir_utils.data.hub_files.HubDataset`): a copy this loader
downloaded and verified before (``data/raw/mmarco/<path>``); the offline directory
(``XLIR_DATA_DIR/mmarco/<path>``, verified against the ``SHA256SUMS`` file there; without one
the files are used unverified, with a warning); else the hub, every file from one commit,
verified against the digest the hub publishes (its Git LFS sha256). The revision is ``main``
resolved once per process: the commit used is recorded beside each download and in the
sample's manifest.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import paths
from ..config import PAPER_TRAIN_LANGS
from ..errors import SettingsError
from ..io_utils import atomic_write_json, atomic_write_parquet, json_digest
from .fetch import DataError
from .hub_files import HubDataset, git_blob_sha1, read_sha256sums  # noqa: F401 - part of this module's API
from .pairs import PAIR_COLUMNS
from .registry import language_tuple

logger = logging.getLogger(__name__)

MMARCO_REPO = "unicamp-dl/mmarco"
MMARCO_REVISION = "main"
TRIPLES_FILE = "data/triples.train.ids.small.tsv"
# kit language code -> the language name in mMARCO's (Google-translated, "v2") file names
MMARCO_LANGUAGES = {
    "ar": "arabic", "de": "german", "en": "english", "es": "spanish", "fr": "french",
    "hi": "hindi", "id": "indonesian", "it": "italian", "ja": "japanese", "nl": "dutch",
    "pt": "portuguese", "ru": "russian", "vi": "vietnamese", "zh": "chinese",
}
PAPER_LANGUAGES = PAPER_TRAIN_LANGS  # the paper's mMARCO languages
LOADER_VERSION = 1  # bump when parsing changes what a sample holds (part of the cache key)


def queries_file(lang: str) -> str:
    return f"data/google/queries/train/{_name(lang)}_queries.train.tsv"


def collection_file(lang: str) -> str:
    return f"data/google/collections/{_name(lang)}_collection.tsv"


def _name(lang: str) -> str:
    if lang not in MMARCO_LANGUAGES:
        raise SettingsError(
            f"mMARCO has no language {lang!r}; it has {', '.join(sorted(MMARCO_LANGUAGES))} "
            "(kit codes; the paper uses en ar zh de es ru hi)."
        )
    return MMARCO_LANGUAGES[lang]


# ----------------------------------------------------------------------------- locating files
MMARCO = HubDataset(MMARCO_REPO, "mmarco", "mMARCO is needed only by the paper profile", MMARCO_REVISION)


def mmarco_file(relpath: str) -> Path:
    """A local, verified path for one mMARCO file (``relpath`` as in the hub repository)."""
    return MMARCO.file(relpath)


def source_id() -> str:
    """Where mMARCO is read from, for cache keys: the offline folder (and its checksums) or the hub."""
    return MMARCO.source_id()


# ----------------------------------------------------------------------------- reading
def _tsv_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its end) of every non-empty line."""
    with open(path, encoding="utf-8", newline="\n") as handle:
        for n, line in enumerate(handle, 1):
            line = line.rstrip("\r\n")
            if line:
                yield n, line


def sample_triples(path: Path, n_queries: int, seed: int, scan_lines: int | None = None) -> pd.DataFrame:
    """``n_queries`` distinct training queries with their first (positive, negative) pair.

    Drawn (seeded) among the distinct qids of the first ``scan_lines`` lines (all if None);
    returned sorted by qid, columns ``qid``, ``pos``, ``neg`` (ints).
    """
    first: dict[int, tuple[int, int]] = {}
    for n, line in _tsv_lines(path):
        if scan_lines is not None and n > scan_lines:
            break
        row = line.split("\t")
        if len(row) != 3:
            raise DataError(f"{path}:{n}: expected 'qid<TAB>positive pid<TAB>negative pid', got {row!r}")
        try:
            qid, pos, neg = (int(x) for x in row)
        except ValueError as exc:
            raise DataError(f"{path}:{n}: ids must be integers, got {row!r}") from exc
        first.setdefault(qid, (pos, neg))
    if not first:
        raise DataError(f"{path} holds no triples")
    qids = np.array(sorted(first))
    if n_queries < len(qids):
        qids = np.sort(np.random.default_rng(seed).choice(qids, size=n_queries, replace=False))
    return pd.DataFrame({"qid": qids, "pos": [first[q][0] for q in qids], "neg": [first[q][1] for q in qids]})


def read_ids(path: Path, ids: set[int]) -> dict[int, str]:
    """The texts of ``ids`` in an ``id<TAB>text`` file, read in one streaming pass."""
    found: dict[int, str] = {}
    for n, line in _tsv_lines(path):
        head, tab, text = line.partition("\t")
        if not tab:
            raise DataError(f"{path}:{n}: expected 'id<TAB>text', got {line[:80]!r}")
        try:
            key = int(head)
        except ValueError as exc:
            raise DataError(f"{path}:{n}: the id must be an integer, got {head[:40]!r}") from exc
        if key in ids:
            found[key] = text.strip()
            if len(found) == len(ids):
                break
    return found


@dataclass(frozen=True)
class MMarcoSample:
    """What a subsample depends on (its digest keys the processed cache)."""

    languages: tuple[str, ...]
    n_queries: int
    seed: int
    scan_lines: int | None
    source: str  # :func:`source_id`
    loader_version: int = LOADER_VERSION

    def digest(self) -> str:
        return json_digest(asdict(self), 12)


def load_mmarco(languages: Sequence[str] = PAPER_LANGUAGES, n_queries: int = 20_000, seed: int = 13,
                scan_lines: int | None = 2_000_000, *, cache: bool = True) -> pd.DataFrame:
    """A parallel subsample of mMARCO: one row per (qid, lang) with query, passage and negative.

    Columns: ``qid``, ``lang``, ``query``, ``passage`` (the positive), ``negative`` (the
    triple's BM25 negative), all in ``lang``. Every kept qid has all ``languages``. The
    result is cached under ``data/processed/mmarco/<digest>.parquet`` with a manifest,
    keyed by :class:`MMarcoSample` (parameters, source, loader version).
    """
    languages = tuple(dict.fromkeys(language_tuple(languages, "mMARCO languages")))
    for lang in languages:
        _name(lang)
    if isinstance(n_queries, bool) or int(n_queries) < 1:
        raise SettingsError(f"n_queries must be a positive integer, got {n_queries!r}")
    sample = MMarcoSample(languages, int(n_queries), int(seed), scan_lines, source_id())
    target = paths.data_dir() / "processed" / "mmarco" / f"{sample.digest()}.parquet"
    if cache and target.is_file():
        return pd.read_parquet(target)
    triples = sample_triples(mmarco_file(TRIPLES_FILE), sample.n_queries, sample.seed, scan_lines)
    if len(triples) < sample.n_queries:
        logger.warning("mMARCO: only %d distinct queries in the first %s triples (asked for %d)",
                       len(triples), scan_lines, sample.n_queries)
    qids, pids = set(triples.qid), set(triples.pos) | set(triples.neg)
    texts = {}
    for lang in languages:
        queries = read_ids(mmarco_file(queries_file(lang)), qids)
        passages = read_ids(mmarco_file(collection_file(lang)), pids)
        texts[lang] = (queries, passages)
    keep = np.ones(len(triples), bool)
    for queries, passages in texts.values():
        keep &= np.array([bool(queries.get(q)) and bool(passages.get(p)) and bool(passages.get(n))
                          for q, p, n in triples[["qid", "pos", "neg"]].itertuples(index=False)])
    dropped = int((~keep).sum())
    if dropped:
        logger.warning("mMARCO: dropped %d of %d sampled queries missing in some language", dropped, len(keep))
    triples = triples[keep]
    if triples.empty:
        raise DataError(f"No sampled mMARCO query has a query, positive and negative in all of {languages}.")
    rows = [(q, lang, texts[lang][0][q], texts[lang][1][p], texts[lang][1][n])
            for q, p, n in triples[["qid", "pos", "neg"]].itertuples(index=False) for lang in languages]
    table = pd.DataFrame(rows, columns=["qid", "lang", "query", "passage", "negative"])
    if cache:
        atomic_write_parquet(table, target)
        atomic_write_json({**asdict(sample), "queries_kept": int(len(triples)), "queries_dropped": dropped,
                           "hub_commit": MMARCO.resolved_commit},
                          target.with_suffix(".json"))
    return table


def mmarco_pairs(parallel: pd.DataFrame, hard_negatives: bool = False) -> pd.DataFrame:
    """The pairs table (:data:`xlir_utils.data.pairs.PAIR_COLUMNS`) of a parallel mMARCO sample.

    One row per (qid, query language, passage language); ``hard_negatives`` adds a
    ``negative`` column (the BM25 negative in the passage's language).
    """
    by_lang = {lang: g.set_index("qid") for lang, g in parallel.groupby("lang", sort=True)}
    frames = []
    for ql, q in by_lang.items():
        for pl, p in by_lang.items():
            shared = q.index.intersection(p.index)
            frame = pd.DataFrame({
                "question_id": "mmarco-" + shared.astype(str), "query_lang": ql,
                "query": q.loc[shared, "query"].to_numpy(), "passage_lang": pl,
                "passage": p.loc[shared, "passage"].to_numpy(), "dataset": "mmarco",
            })
            if hard_negatives:
                frame["negative"] = p.loc[shared, "negative"].to_numpy()
            frames.append(frame)
    cols = PAIR_COLUMNS + (["negative"] if hard_negatives else [])
    out = pd.concat(frames, ignore_index=True)[cols]
    return out.sort_values(["question_id", "query_lang", "passage_lang"], kind="stable").reset_index(drop=True)
