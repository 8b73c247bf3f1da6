"""Data layer: registry and fetch, LAReQA parsing, training pairs, text for language adapters."""
from .fetch import ChecksumMismatch, DataError, DataUnavailable, fetch, fetch_all, sha256_of
from .lareqa import EXPECTED_COUNTS, RetrievalSet, load_retrieval_set
from .pairs import LeakageError, as_dataset, build_pairs, check_no_leakage, drop_overlap
from .parallel import monolingual_text, ntrex_sentences, tatoeba_sentences
from .processed import read_processed, write_processed
from .registry import REGISTRY, RemoteFile, check_languages

__all__ = [
    "ChecksumMismatch", "DataError", "DataUnavailable", "EXPECTED_COUNTS", "LeakageError", "REGISTRY",
    "RemoteFile", "RetrievalSet", "as_dataset", "build_pairs", "check_languages", "check_no_leakage",
    "drop_overlap", "fetch", "fetch_all", "load_retrieval_set", "monolingual_text", "ntrex_sentences",
    "read_processed", "sha256_of", "tatoeba_sentences", "write_processed",
]
