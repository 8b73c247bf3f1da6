"""Processed tables written by notebook 01 and read by the later notebooks.

Each dataset is stored as Parquet (queries, candidates, qrels) beside a manifest naming what
produced it (raw sha256s, article selection, parser version). A table whose manifest does
not match the request is rebuilt, never trusted, so every notebook can run on its own.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from .. import paths
from ..io_utils import atomic_write_json, atomic_write_parquet
from .lareqa import RetrievalSet, load_retrieval_set
from .registry import check_languages, lareqa_file

PARSER_VERSION = 1


def _manifest(name: str, languages: tuple[str, ...], articles: int | None) -> dict:
    return {"dataset": name, "languages": list(languages), "articles": articles,
            "parser_version": PARSER_VERSION,
            "raw_sha256": {lang: lareqa_file(name, lang).sha256 for lang in languages}}


def processed_path(name: str, profile: str):
    return paths.processed_dir(profile) / name


def write_processed(rset: RetrievalSet, profile: str, articles: int | None) -> None:
    """Write queries, candidates, qrels and the manifest (each file atomically)."""
    folder = paths.ensure(processed_path(rset.name, profile))
    atomic_write_parquet(rset.queries, folder / "queries.parquet")
    atomic_write_parquet(rset.candidates, folder / "candidates.parquet")
    atomic_write_parquet(rset.qrels(), folder / "qrels.parquet")
    atomic_write_json(_manifest(rset.name, rset.languages, articles), folder / "manifest.json")


def read_processed(name: str, profile: str, languages=None, articles: int | None = None) -> RetrievalSet:
    """Load the processed tables, rebuilding them from raw data if absent or stale."""
    languages = check_languages(name, languages)
    folder = processed_path(name, profile)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        fresh = manifest == _manifest(name, languages, articles)
    except (OSError, ValueError):
        fresh = False
    if not fresh:
        rset = load_retrieval_set(name, languages, articles)
        write_processed(rset, profile, articles)
        return rset
    queries = pd.read_parquet(folder / "queries.parquet")
    candidates = pd.read_parquet(folder / "candidates.parquet")
    qrels = pd.read_parquet(folder / "qrels.parquet")
    pos = pd.Series(np.arange(len(candidates)), index=candidates.candidate_id)
    grouped = qrels.assign(pos=pos.loc[qrels.candidate_id].to_numpy()).groupby("query_id")["pos"]
    rel = {qid: np.sort(v.to_numpy().astype(np.int64)) for qid, v in grouped}
    relevant = [rel[qid] for qid in queries.query_id]
    return RetrievalSet(name, languages, queries, candidates, relevant)
