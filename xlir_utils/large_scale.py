"""Retrieval over corpora too large for the exact engine: resumable sharded encoding and FAISS
(notebook 04 §9; Mewsli-X and MIRACL in the ``paper`` profile).

* :func:`encode_shards` encodes a corpus in shards of ``shard_size`` texts, each stored (atomically,
  keyed by the system's fingerprint and the shard's texts, verified on read) under the cache, so an
  interrupted run resumes at the first missing shard. With ``rank``/``world`` a process encodes
  every ``world``-th shard: several processes (or GPUs) split a corpus (scaling, ``xlir_utils.train``).
* :func:`build_index` puts the shards into one FAISS index over L2-normalised vectors: exact inner
  product (``IndexFlatIP``) by default, IVF or HNSW for corpora that do not fit; for the approximate
  ones :func:`recall_against_flat` measures what they lose on a sample of queries.
* :func:`ranks_of_relevant` turns a top-k search into the inf-padded ranks the kit's metrics read.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import paths
from .io_utils import atomic_write_npz

logger = logging.getLogger(__name__)

EncodeFn = Callable[[Sequence[str]], np.ndarray]  # texts -> L2-normalised rows
INDEX_KINDS = ("flat", "ivf", "hnsw")


def _digest(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        data = t.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()[:16]


def shard_folder(profile_name: str, system_label: str, corpus: str) -> Path:
    """Where one system's shards of one corpus live (under the cache)."""
    return paths.cache_dir() / "shards" / profile_name / system_label / corpus


def _read_shard(path: Path, key: str) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            emb = np.ascontiguousarray(z["embeddings"])
        if hashlib.sha256(emb.tobytes()).hexdigest() != key.rsplit("|", 1)[-1]:
            raise ValueError("checksum mismatch")
        return emb
    except Exception as exc:  # noqa: BLE001 - truncated or foreign shard: encode it again
        logger.warning("shard %s is unreadable (%s); encoding it again", path, exc)
        return None


def encode_shards(encode: EncodeFn, texts: Sequence[str], folder: Path, *, fingerprint: str, shard_size: int = 50_000,
                  rank: int = 0, world: int = 1, show_progress: bool = True) -> list[Path]:
    """Encode ``texts`` in shards (this process: shards ``rank``, ``rank + world``, ...), skipping
    every shard already stored for this fingerprint and these texts; returns this process's shard paths."""
    from tqdm.auto import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    starts = list(range(0, len(texts), shard_size))[rank::world]
    written = []
    for start in tqdm(starts, desc=f"shards of {folder.name}", disable=not show_progress):
        chunk = list(texts[start:start + shard_size])
        path = folder / f"shard-{start // shard_size:06d}.npz"
        base = f"{fingerprint}|{start}|{len(chunk)}|{_digest(chunk)}"
        stored = None
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    if str(z["key"]).startswith(base + "|"):
                        stored = _read_shard(path, str(z["key"]))
            except Exception as exc:  # noqa: BLE001
                logger.warning("shard %s is unreadable (%s); encoding it again", path, exc)
        if stored is None:
            emb = np.ascontiguousarray(encode(chunk), dtype=np.float32)
            key = f"{base}|{hashlib.sha256(emb.tobytes()).hexdigest()}"
            atomic_write_npz(path, embeddings=emb, key=np.array(key))
        written.append(path)
    return written


def load_shards(folder: Path, n_texts: int, shard_size: int) -> np.ndarray:
    """Every shard of a corpus, in order, as one array, each verified against the checksum in its
    key (a missing or damaged shard raises, naming it; ``encode_shards`` again re-encodes it)."""
    parts = []
    for i, start in enumerate(range(0, n_texts, shard_size)):
        path = folder / f"shard-{i:06d}.npz"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: encode_shards has not finished this corpus (run it again)")
        try:
            with np.load(path, allow_pickle=False) as z:
                key = str(z["key"])
        except Exception as exc:  # noqa: BLE001 - truncated or foreign file
            raise ValueError(f"{path} is unreadable ({exc}): run encode_shards again, it re-encodes the shard") from None
        emb = _read_shard(path, key)
        expected = min(shard_size, n_texts - start)
        if emb is None or len(emb) != expected:
            raise ValueError(f"{path} is damaged or holds {0 if emb is None else len(emb)} rows, not {expected}: "
                             "run encode_shards again, it re-encodes the shard")
        parts.append(emb)
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def encode_corpus(encode: EncodeFn, texts: Sequence[str], folder: Path, *, fingerprint: str,
                  shard_size: int = 50_000, show_progress: bool = True) -> np.ndarray:
    """Encode a corpus in resumable shards across the processes of a ``torchrun`` job (each takes
    every ``world``-th shard; one process takes all), wait for all, and return every embedding in
    corpus order (verified shards; README, "Scaling out")."""
    from .training import distributed as D

    ctx = D.context()
    encode_shards(encode, texts, folder, fingerprint=fingerprint, shard_size=shard_size, rank=ctx.rank,
                  world=ctx.world, show_progress=show_progress and ctx.is_main)
    D.barrier(ctx)
    return load_shards(folder, len(texts), shard_size)


def build_index(vectors: np.ndarray, kind: str = "flat", *, nlist: int | None = None, hnsw_m: int = 32, seed: int = 13):
    """A FAISS index over L2-normalised ``vectors`` (inner product = cosine): ``flat`` (exact),
    ``ivf`` (inverted lists, ``nlist`` ~ 4 sqrt(n); trained on the vectors) or ``hnsw``."""
    import faiss

    if kind not in INDEX_KINDS:
        raise ValueError(f"index kind must be one of {INDEX_KINDS}, got {kind!r}")
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    d = x.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 200  # FAISS's defaults (40, 16) lose >10 % of a top 100 (tests/test_distributed.py)
        index.hnsw.efSearch = 256
    else:
        nlist = nlist or max(1, int(4 * np.sqrt(len(x))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(x)
        index.nprobe = max(1, nlist // 8)
    index.add(x)
    return index


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, candidate positions) of each query's top ``k``."""
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def recall_against_flat(index, flat, queries: np.ndarray, k: int = 100) -> float:
    """Share of the exact top ``k`` that an approximate index also returns (mean over queries)."""
    _, exact = search(flat, queries, k)
    _, approx = search(index, queries, k)
    return float(np.mean([len(set(a) & set(e)) / k for a, e in zip(approx, exact)]))


def ranks_of_relevant(top: np.ndarray, relevant: Sequence[Iterable[int]]) -> np.ndarray:
    """Inf-padded 1-based ranks (n, max |R|) of each query's relevant positions within its top-k
    list (``inf`` when not retrieved): the input of :mod:`xlir_utils.metrics.per_query`."""
    rel = [set(int(r) for r in rs) for rs in relevant]
    width = max([len(r) for r in rel] + [1])
    out = np.full((len(rel), width), np.inf)
    for i, (row, rs) in enumerate(zip(top, rel)):
        hits = [j + 1 for j, c in enumerate(row) if int(c) in rs]
        out[i, : len(hits)] = hits
    return out


def mewsli_map20(top: np.ndarray, gold: Sequence[int], langs: Sequence[str]) -> pd.DataFrame:
    """XTREME-R's Mewsli-X mAP@20 per language and their mean: 1/rank of the gold entity within the
    top 20, else 0, averaged over each language's queries."""
    rr = np.array([1.0 / (list(row[:20]).index(g) + 1) if g in row[:20] else 0.0 for row, g in zip(top, gold)])
    per = pd.Series(rr).groupby(np.asarray(langs)).mean()
    return pd.concat([per, pd.Series({"all": per.mean()})]).rename("map@20").rename_axis("lang").reset_index()


def _index_for(vectors: np.ndarray, max_flat: int):
    return build_index(vectors, "flat" if len(vectors) <= max_flat else "hnsw")


def evaluate_mewsli_x(profile, system, *, split: str = "test", shard_size: int = 50_000,
                      max_flat: int = 5_000_000) -> pd.DataFrame:
    """Mewsli-X mAP@20 of one system (notebook 04 §9): candidates encoded in resumable shards,
    exact inner-product search, XTREME-R's query and candidate texts."""
    from .data.mewsli_x import LANGUAGES, mewsli_candidates, mewsli_queries

    cands = mewsli_candidates()
    folder = shard_folder(profile.name, system.label, "mewsli-x")
    encode_shards(lambda t: system.encode(t, [""] * len(t), "passage"), cands.text.tolist(), folder,
                  fingerprint=system.fingerprint, shard_size=shard_size)
    index = _index_for(load_shards(folder, len(cands), shard_size), max_flat)
    queries = mewsli_queries(split, LANGUAGES)
    q = system.encode(queries.text.tolist(), queries.lang.tolist(), "query")
    _, top = search(index, q, 20)
    position = pd.Series(np.arange(len(cands)), index=cands.entity_id)
    gold = position.reindex(queries.entity_id).fillna(-1).astype(int).to_numpy()
    out = mewsli_map20(top, gold, queries.lang.tolist())
    return out.rename(columns={"map@20": "value"}).assign(metric="map@20", dataset="mewsli-x", system=system.system,
                                                          model=system.label, seed=system.seed)


def evaluate_miracl(profile, system, languages: Sequence[str], *, split: str = "dev", shard_size: int = 100_000,
                    max_flat: int = 5_000_000) -> pd.DataFrame:
    """MIRACL nDCG@10 and Recall@100 per language, with their mean and median (notebook 04 §9)."""
    from .data.miracl import miracl_corpus, miracl_qrels, miracl_topics
    from .metrics import ndcg_at_k, recall_at_k

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
    return pd.concat([out, summary], ignore_index=True).assign(dataset="miracl", system=system.system,
                                                               model=system.label, seed=system.seed)


def run_large_scale(profile, system_list) -> pd.DataFrame:
    """The suites of ``profile.large_scale`` for every system (notebook 04 §9, ``paper``). MIRACL's
    paper numbers (Tables 12-13 of arXiv 2408.10536) could not be read where this kit was built, so
    none are printed beside ours."""
    from .data.miracl import KNOWN_LANGUAGES

    frames = []
    for system in system_list:
        if "mewsli-x" in profile.large_scale:
            frames.append(evaluate_mewsli_x(profile, system))
        if "miracl" in profile.large_scale:
            frames.append(evaluate_miracl(profile, system, profile.miracl_languages or KNOWN_LANGUAGES))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
