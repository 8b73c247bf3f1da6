"""Mewsli-X and MIRACL over their full candidate pools (notebook 04 §9, ``paper`` profile):
candidates encoded in resumable shards (:mod:`.shards`), searched with FAISS (:mod:`.index`),
scored with XTREME-R's Mewsli-X mAP@20 and MIRACL's nDCG@10 / Recall@100.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from ..data.mewsli_x import LANGUAGES as MEWSLI_LANGUAGES
from ..data.mewsli_x import mewsli_candidates, mewsli_queries
from ..data.miracl import KNOWN_LANGUAGES as MIRACL_LANGUAGES
from ..data.miracl import miracl_corpus, miracl_qrels, miracl_topics
from ..metrics import ndcg_at_k, recall_at_k
from ..systems.record import one_model_at_a_time
from .index import build_index, search
from .shards import encode_shards, load_shards, shard_folder


def ranks_of_relevant(top: np.ndarray, relevant: Sequence[Iterable[int]]) -> np.ndarray:
    """Inf-padded 1-based ranks (n, max |R|) of each query's relevant positions within its top-k
    list (``inf`` when not retrieved): the input of :mod:`xlir_utils.metrics.per_query` (notebook 04 §9)."""
    rel = [set(int(r) for r in rs) for rs in relevant]
    width = max([len(r) for r in rel] + [1])
    out = np.full((len(rel), width), np.inf)
    for i, (row, rs) in enumerate(zip(top, rel)):
        hits = [j + 1 for j, c in enumerate(row) if int(c) in rs]
        out[i, : len(hits)] = hits
    return out


def mewsli_map20(top: np.ndarray, gold: Sequence[int], langs: Sequence[str]) -> pd.DataFrame:
    """XTREME-R's Mewsli-X mAP@20 per language and their mean: 1/rank of the gold entity within the
    top 20, else 0, averaged over each language's queries (notebook 04 §9)."""
    rr = np.array([1.0 / (list(row[:20]).index(g) + 1) if g in row[:20] else 0.0 for row, g in zip(top, gold)])
    per = pd.Series(rr).groupby(np.asarray(langs)).mean()
    return pd.concat([per, pd.Series({"all": per.mean()})]).rename("map@20").rename_axis("lang").reset_index()


def _index_for(vectors: np.ndarray, max_flat: int):
    return build_index(vectors, "flat" if len(vectors) <= max_flat else "hnsw")


def evaluate_mewsli_x(profile, system, *, split: str = "test", shard_size: int = 50_000,
                      max_flat: int = 5_000_000) -> pd.DataFrame:
    """Mewsli-X mAP@20 of one system (notebook 04 §9): candidates encoded in resumable shards,
    exact inner-product search, XTREME-R's query and candidate texts."""
    cands = mewsli_candidates()
    folder = shard_folder(profile.name, system.label, "mewsli-x")
    encode_shards(lambda t: system.encode(t, [""] * len(t), "passage"), cands.text.tolist(), folder,
                  fingerprint=system.fingerprint, shard_size=shard_size)
    index = _index_for(load_shards(folder, len(cands), shard_size), max_flat)
    queries = mewsli_queries(split, MEWSLI_LANGUAGES)
    q = system.encode(queries.text.tolist(), queries.lang.tolist(), "query")
    _, top = search(index, q, 20)
    position = pd.Series(np.arange(len(cands)), index=cands.entity_id)
    gold = position.reindex(queries.entity_id).fillna(-1).astype(int).to_numpy()
    out = mewsli_map20(top, gold, queries.lang.tolist())
    return out.rename(columns={"map@20": "value"}).assign(metric="map@20", dataset="mewsli-x", **system.columns())


def evaluate_miracl(profile, system, languages: Sequence[str], *, split: str = "dev", shard_size: int = 100_000,
                    max_flat: int = 5_000_000) -> pd.DataFrame:
    """MIRACL nDCG@10 and Recall@100 per language, with their mean and median (notebook 04 §9)."""
    rows = []
    for lang in languages:
        corpus = pd.concat(list(miracl_corpus(lang)), ignore_index=True)
        folder = shard_folder(profile.name, system.label, f"miracl-{lang}")
        encode_shards(lambda t: system.encode(t, [lang] * len(t), "passage"), corpus.text.tolist(), folder,
                      fingerprint=system.fingerprint, shard_size=shard_size)
        index = _index_for(load_shards(folder, len(corpus), shard_size), max_flat)
        topics, qrels = miracl_topics(lang, split), miracl_qrels(lang, split)
        position = pd.Series(np.arange(len(corpus)), index=corpus.docid)
        judged = qrels[qrels.relevance > 0]
        relevant = [position.reindex(judged.docid[judged.qid == qid]).dropna().astype(int).tolist()
                    for qid in topics.qid]
        keep = [i for i, r in enumerate(relevant) if r]
        q = system.encode(topics["query"].iloc[keep].tolist(), [lang] * len(keep), "query")
        _, top = search(index, q, 100)
        ranks = ranks_of_relevant(top, [relevant[i] for i in keep])
        rows += [{"lang": lang, "metric": "ndcg@10", "value": float(np.nanmean(ndcg_at_k(ranks, 10)))},
                 {"lang": lang, "metric": "recall@100", "value": float(np.nanmean(recall_at_k(ranks, 100)))}]
    out = pd.DataFrame(rows)
    summary = out.groupby("metric").value.agg(["mean", "median"]).reset_index().melt(
        id_vars="metric", var_name="lang", value_name="value")
    return pd.concat([out, summary], ignore_index=True).assign(dataset="miracl", **system.columns())


def run_large_scale(profile, system_list) -> pd.DataFrame:
    """The suites of ``profile.large_scale`` for every system, one model in memory at a time
    (notebook 04 §9, ``paper``). The paper's MIRACL numbers (Tables 12-13 of arXiv 2408.10536) are
    not transcribed in the kit, so none are printed beside ours."""
    frames = []
    for system in one_model_at_a_time(system_list):
        if "mewsli-x" in profile.large_scale:
            frames.append(evaluate_mewsli_x(profile, system))
        if "miracl" in profile.large_scale:
            frames.append(evaluate_miracl(profile, system, profile.miracl_languages or MIRACL_LANGUAGES))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
