"""Retrieval over corpora too large for the exact engine: resumable sharded encoding and FAISS
(notebook 04 §9; Mewsli-X and MIRACL in the ``paper`` profile).

* :mod:`.shards` - :func:`encode_shards` encodes a corpus in shards of ``shard_size`` texts, each
  stored (atomically, keyed by the system's fingerprint and the shard's texts, verified on read)
  under the cache, so an interrupted run resumes at the first missing shard; with ``rank``/``world``
  several processes (or GPUs) split a corpus (:func:`encode_corpus`, ``xlir_utils.shard_encode``).
* :mod:`.index` - :func:`build_index` puts the shards into one FAISS index over L2-normalised
  vectors: exact inner product (``IndexFlatIP``) by default, IVF or HNSW for corpora that do not
  fit; for the approximate ones :func:`recall_against_flat` measures what they lose.
* :mod:`.evaluation` - Mewsli-X and MIRACL (:func:`run_large_scale`), and
  :func:`ranks_of_relevant`, which turns a top-k search into the inf-padded ranks the kit's
  metrics read.
"""
from .evaluation import evaluate_miracl, evaluate_mewsli_x, mewsli_map20, ranks_of_relevant, run_large_scale
from .index import INDEX_KINDS, build_index, recall_against_flat, search, write_index
from .shards import TextsEncodeFn, encode_corpus, encode_shards, load_shards, shard_folder, shard_key, shard_path

__all__ = [
    "INDEX_KINDS", "TextsEncodeFn", "build_index", "encode_corpus", "encode_shards", "evaluate_mewsli_x", "evaluate_miracl",
    "load_shards", "mewsli_map20", "ranks_of_relevant", "recall_against_flat", "run_large_scale", "search",
    "shard_folder", "shard_key", "shard_path", "write_index",
]
