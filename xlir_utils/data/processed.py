"""Processed tables written by notebook 01 and read by the later notebooks.

Each dataset is a folder of Parquet files (queries, candidates, qrels) with a manifest naming
what produced it (raw sha256s, article selection, parser version) and the sha256 of every
table. The folder is written as a unit (built beside, then swapped in), so an interrupted
rebuild leaves the previous set; a table whose manifest does not match the request, or whose
files are missing or damaged, is rebuilt from the raw data (with a warning), never trusted.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .. import paths
from ..io_utils import atomic_replace_dir, atomic_write_json, atomic_write_parquet, recover_dir
from .fetch import sha256_of
from .lareqa import RetrievalSet, Split, load_retrieval_set, set_name
from .registry import check_languages, lareqa_file

logger = logging.getLogger(__name__)

PARSER_VERSION = 1
TABLES = ("queries", "candidates", "qrels")


def _manifest(name: str, languages: tuple[str, ...], articles: int | None, split: Split | None = None) -> dict:
    manifest = {"dataset": name, "languages": list(languages), "articles": articles,
                "parser_version": PARSER_VERSION,
                "raw_sha256": {lang: lareqa_file(name, lang).sha256 for lang in languages}}
    if split is not None:  # (absent for an unsplit set: older manifests stay valid)
        manifest["split"] = {"part": split.part, "fraction": split.fraction, "seed": split.seed}
    return manifest


def processed_path(name: str, profile: str) -> Path:
    """``data/processed/<profile>/<dataset>/``."""
    return paths.processed_dir(profile) / name


def write_processed(rset: RetrievalSet, profile: str, articles: int | None, split: Split | None = None,
                    base_name: str | None = None) -> Path:
    """Write queries, candidates, qrels and the manifest as one unit (notebook 01 §2)."""
    frames = {"queries": rset.queries, "candidates": rset.candidates, "qrels": rset.qrels()}

    def write(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        digests = {}
        for table, df in frames.items():
            atomic_write_parquet(df, tmp / f"{table}.parquet")
            digests[table] = sha256_of(tmp / f"{table}.parquet")
        manifest = _manifest(base_name or rset.name, rset.languages, articles, split)
        atomic_write_json({**manifest, "tables_sha256": digests}, tmp / "manifest.json")

    paths.ensure(paths.processed_dir(profile))
    return atomic_replace_dir(processed_path(rset.name, profile), write)


def _read_set(folder: Path, expected: dict) -> dict[str, pd.DataFrame] | None:
    """The tables of a processed folder if it is the one ``expected`` describes and intact; else None."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    digests = manifest.pop("tables_sha256", None)
    if manifest != expected or not isinstance(digests, dict):
        return None  # another request (articles, parser version, raw files) or an older layout: rebuild quietly
    try:
        if any(sha256_of(folder / f"{t}.parquet") != digests.get(t) for t in TABLES):
            raise ValueError("a table is missing or does not match the sha256 in its manifest")
        return {t: pd.read_parquet(folder / f"{t}.parquet") for t in TABLES}
    except Exception as exc:  # noqa: BLE001 - missing, truncated or damaged Parquet: rebuild
        logger.warning("processed tables in %s are damaged (%s); rebuilding them from the raw data", folder, exc)
        return None


def read_processed(name: str, profile: str, languages=None, articles: int | None = None,
                   split: Split | None = None) -> RetrievalSet:
    """Load the processed tables, rebuilding them from raw data if absent, stale or damaged
    (notebooks 01 §2, 02-05 §1). ``split``: one part of a held-out split (``mlqa-r-dev``)."""
    languages = check_languages(name, languages)
    folder = recover_dir(processed_path(set_name(name, split), profile))
    tables = _read_set(folder, _manifest(name, languages, articles, split))
    if tables is None:
        rset = load_retrieval_set(name, languages, articles, split)
        write_processed(rset, profile, articles, split, base_name=name)
        return rset
    queries, candidates, qrels = tables["queries"], tables["candidates"], tables["qrels"]
    pos = pd.Series(np.arange(len(candidates)), index=candidates.candidate_id)
    grouped = qrels.assign(pos=pos.loc[qrels.candidate_id].to_numpy()).groupby("query_id")["pos"]
    rel = {qid: np.sort(v.to_numpy().astype(np.int64)) for qid, v in grouped}
    relevant = [rel[qid] for qid in queries.query_id]
    return RetrievalSet(set_name(name, split), languages, queries, candidates, relevant)
