"""Retrieval metrics for the LAReQA protocol (notebook 04): arrays and tensors in, arrays out;
nothing here reads a file.

* :mod:`.ranking` - the exact, tie-aware rank engine (pool and per-language ranks, one pass);
* :mod:`.per_query` - AP, AP@k (LAReQA), Recall@k, RR, nDCG@k, rank distance, top-k language mix;
* :mod:`.statistics` - macro means, the bootstrap over queries within languages, paired tests;
* :mod:`.reference` - a short, readable reference of AP and mAP@20 as XTREME-R computes them.
"""
from .per_query import (
    ap_at_k_lareqa,
    average_precision,
    ndcg_at_k,
    pool_language_share,
    rank_distance,
    recall_at_k,
    reciprocal_rank,
    safe_div,
    same_language_share,
)
from .ranking import RelevantRanks, rank_relevant_grouped
from .statistics import (
    PairedTest,
    bootstrap_weight_batches,
    cell_means,
    macro_mean,
    paired_test,
    paired_tests,
    select_mean,
)

__all__ = [
    "PairedTest", "RelevantRanks", "ap_at_k_lareqa", "average_precision", "bootstrap_weight_batches",
    "cell_means", "macro_mean", "ndcg_at_k", "paired_test", "paired_tests", "pool_language_share", "rank_distance",
    "rank_relevant_grouped", "recall_at_k", "reciprocal_rank", "safe_div", "same_language_share", "select_mean",
]
