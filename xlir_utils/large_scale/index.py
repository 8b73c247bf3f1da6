"""FAISS indexes over L2-normalised vectors, for corpora too large for the exact engine
(notebook 04 §9; ``python -m xlir_utils.shard_encode --index``).

:func:`build_index` builds an exact inner-product index (``IndexFlatIP``) by default, IVF or HNSW
for corpora that do not fit; :func:`recall_against_flat` measures what an approximate one loses on
a sample of queries; :func:`write_index` saves one atomically.
"""
from __future__ import annotations

import os

import numpy as np

from ..io_utils import atomic_output

INDEX_KINDS = ("flat", "ivf", "hnsw")


def build_index(vectors: np.ndarray, kind: str = "flat", *, nlist: int | None = None, hnsw_m: int = 32, seed: int = 13):
    """A FAISS index over L2-normalised ``vectors`` (inner product = cosine): ``flat`` (exact),
    ``ivf`` (inverted lists, ``nlist`` ~ 4 sqrt(n); trained on the vectors) or ``hnsw`` (notebook 04 §9)."""
    if kind not in INDEX_KINDS:
        raise ValueError(f"index kind must be one of {INDEX_KINDS}, got {kind!r}")
    import faiss  # lazy: heavy, and only the large-scale suites and shard_encode --index need it

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


def write_index(index, path: str | os.PathLike) -> None:
    """Save a FAISS index atomically: a reader sees the old index or the new one, never half of one."""
    import faiss  # lazy: see build_index

    with atomic_output(path) as tmp:
        faiss.write_index(index, str(tmp))


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, candidate positions) of each query's top ``k`` (notebook 04 §9)."""
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def recall_against_flat(index, flat, queries: np.ndarray, k: int = 100) -> float:
    """Share of the exact top ``k`` that an approximate index also returns (mean over queries)."""
    _, exact = search(flat, queries, k)
    _, approx = search(index, queries, k)
    return float(np.mean([len(set(a) & set(e)) / k for a, e in zip(approx, exact)]))
