"""Data layer: registry and fetch, LAReQA parsing, training pairs, text for language adapters."""
from .datasets import retrieval_set, training_set
from .fetch import ChecksumMismatch, DataError, DataUnavailable, fetch, fetch_all, sha256_of
from .lareqa import EXPECTED_COUNTS, RetrievalSet, Split, load_retrieval_set
from .mmarco import load_mmarco, mmarco_pairs
from .pairs import LeakageError, build_pairs, check_no_leakage, drop_overlap
from .parallel import monolingual_text, ntrex_sentences
from .processed import read_processed, write_processed
from .registry import REGISTRY, RemoteFile, check_languages
from .tatoeba import tatoeba_languages, tatoeba_pairs, tatoeba_texts
from .training_data import TRAIN_DATASETS, check_training_pairs, evaluation_sets, training_pairs

__all__ = [
    "ChecksumMismatch", "DataError", "DataUnavailable", "EXPECTED_COUNTS", "LeakageError", "REGISTRY",
    "RemoteFile", "RetrievalSet", "Split", "TRAIN_DATASETS", "build_pairs", "check_languages",
    "check_no_leakage", "check_training_pairs", "drop_overlap", "evaluation_sets", "fetch", "fetch_all", "load_mmarco", "load_retrieval_set",
    "mmarco_pairs", "monolingual_text", "ntrex_sentences", "read_processed", "sha256_of",
    "retrieval_set", "tatoeba_languages", "tatoeba_pairs", "tatoeba_texts", "training_pairs", "training_set", "write_processed",
]
