"""The evaluation embedding store: each (system, dataset)'s query and candidate embeddings,
kept under the cache (``eval/<profile>/<system>/<dataset>.npz``) in the kit's keyed array store
with the key of what produced them, so notebooks 04-06 never encode a system twice and never
read a changed model's stale vectors or a damaged file (notebooks 04 §3, 05, 06).

One process encodes a system at a time: the encode-and-write holds the lock of the system's store
folder (``eval/<profile>/<system>.lock``), and a second process encoding the same system waits
for it, then reads what the first stored.
"""
from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from .. import paths
from ..io_utils import exclusive_lock
from ..keyed_arrays import read_keyed_arrays, text_digest, write_keyed_arrays
from .record import System

logger = logging.getLogger(__name__)


def embeddings_path(profile_name: str, label: str, dataset: str) -> Path:
    """Where a system's embeddings of one dataset are stored (under the cache; notebooks 04 §3, 05)."""
    return paths.cache_dir() / "eval" / profile_name / label / f"{dataset}.npz"


def _store_key(system: System, rset, candidate_text: str) -> str:
    texts = text_digest([*rset.queries.text, *rset.candidate_texts(candidate_text)], 16)
    return f"{system.fingerprint}|{candidate_text}|{len(rset.queries)}|{len(rset.candidates)}|{texts}"


def embed_retrieval_set(system: System, rset, candidate_text: str, profile_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Query and candidate embeddings of a retrieval set: from the store when it holds this
    system's embeddings of these texts, else encoded and stored (notebooks 04 §3, 05).

    Encoding holds the lock of the system's store folder: a second process encoding the same
    system waits, then reuses what the first stored. A store that cannot be written (or locked)
    is logged and skipped: the embeddings are returned all the same.
    """
    path = embeddings_path(profile_name, system.label, rset.name)
    key = _store_key(system, rset, candidate_text)
    stored = load_embeddings(path, key)
    if stored is not None:
        return stored
    seen = _stamp(path)
    with ExitStack() as stack:
        try:
            stack.enter_context(exclusive_lock(path.parent, f"the evaluation store of {system.label}", wait=True))
        except OSError as exc:
            logger.warning("could not lock the evaluation store %s (%s); encoding without it", path.parent, exc)
        else:
            if _stamp(path) != seen and (stored := load_embeddings(path, key)) is not None:
                return stored  # stored by another process while this one waited
        q = system.encode(rset.queries.text.tolist(), rset.queries.lang.tolist(), "query")
        c = system.encode(rset.candidate_texts(candidate_text), rset.candidates.lang.tolist(), "passage")
        try:
            write_keyed_arrays(path, key, queries=q.astype(np.float32), candidates=c.astype(np.float32))
        except OSError as exc:  # WriteError (a full disk, a read-only cache) is an OSError too
            logger.warning("could not store the embeddings of %s in %s (%s); continuing without the store",
                           system.label, path, exc)
    return q, c


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def load_embeddings(path: Path, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Stored (queries, candidates) embeddings of ``key``, or None: absent, of another key, or
    unreadable or damaged (then with a warning naming the file; the caller encodes again and
    replaces it). Used by :func:`embed_retrieval_set` (notebooks 04 §3, 05)."""
    stored = read_keyed_arrays(path, key)
    if stored is None:
        return None
    if set(stored) != {"queries", "candidates"}:
        logger.warning("stored embeddings %s hold %s, not queries and candidates; encoding again", path, sorted(stored))
        return None
    return stored["queries"], stored["candidates"]
