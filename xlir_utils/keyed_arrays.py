"""The one keyed array store: caches of arrays (embeddings, shards) written with the key of what
produced them and a SHA-256 of the arrays, and returned only for that key after that SHA-256 is
checked, so a damaged file is computed again, never trusted (notebooks 02-05). Texts enter keys
through :func:`text_digest`; files are written through :mod:`xlir_utils.io_utils`' atomic path.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from .io_utils import atomic_write_npz

logger = logging.getLogger(__name__)


def text_digest(texts: Iterable[str], length: int | None = None) -> str:
    """SHA-256 (hex, first ``length`` characters; all 64 by default) of a sequence of texts, each
    as 8-byte little-endian length + UTF-8 (lone surrogates kept), so no two sequences collide
    by concatenation: how texts enter every cache key (notebooks 02-05: embeddings, shards)."""
    h = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:length]


_RECORD = "__record__"  # the member of a keyed array file that holds its key and checksum
_FORMAT = 1


def _arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over each array's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = arrays[name]
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(np.ascontiguousarray(a).reshape(-1).view(np.uint8))
    return h.hexdigest()


def write_keyed_arrays(path: str | os.PathLike, key: str, **arrays: np.ndarray) -> Path:
    """Store ``arrays`` as an uncompressed ``.npz`` with ``key`` (what produced them) and a SHA-256
    of the arrays, atomically (the embedding caches of notebooks 02-05, shards of notebook 04 §9).

    Args:
        path: the file (its folder is created).
        key: identifies everything the arrays were computed from; :func:`read_keyed_arrays`
            returns them for this key only.
        **arrays: at least one array, none of object dtype.

    Returns:
        ``path``. Raises ``OSError`` when it cannot be written (callers that cache decide).

    Example::

        write_keyed_arrays(folder / "shard-000000.npz", "model-fp|0|500|ab12", embeddings=emb)
        read_keyed_arrays(folder / "shard-000000.npz", "model-fp|0|500|ab12")["embeddings"]
    """
    if not arrays or _RECORD in arrays:
        raise ValueError(f"give at least one array, none named {_RECORD!r}")
    arrays = {name: np.asarray(a) for name, a in arrays.items()}
    if any(a.dtype.hasobject for a in arrays.values()):
        raise TypeError("object arrays cannot be stored (they would need pickle)")
    record = {"format": _FORMAT, "key": key, "sha256": _arrays_digest(arrays)}
    return atomic_write_npz(path, **arrays, **{_RECORD: np.array(json.dumps(record))})


def read_keyed_arrays(path: str | os.PathLike, key: str | None) -> dict[str, np.ndarray] | None:
    """The arrays stored in ``path`` for ``key``, after verifying their SHA-256 (notebooks 02-05,
    through the embedding caches and shards).

    Args:
        path: a file written by :func:`write_keyed_arrays`.
        key: the key the arrays must have been stored with; None accepts any key (a reader that
            only needs intact contents).

    Returns:
        ``{name: array}``, or None when the file is absent, holds another key (logged at info
        level), or is unreadable, truncated, of another format or fails its checksum (a warning
        naming the file). The caller computes the arrays again and replaces the file.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if _RECORD not in z.files:
                raise ValueError("no key record (not a keyed array file, or an older format)")
            record = json.loads(str(z[_RECORD]))
            if record.get("format") != _FORMAT:
                raise ValueError(f"format {record.get('format')!r}, expected {_FORMAT}")
            if key is not None and record.get("key") != key:
                logger.info("%s holds arrays of another key; treated as missing", path)
                return None
            arrays = {name: z[name] for name in z.files if name != _RECORD}
        if _arrays_digest(arrays) != record.get("sha256"):
            raise ValueError("checksum mismatch: the arrays changed after they were written")
    except Exception as exc:  # noqa: BLE001 - truncated, corrupt or foreign file (BadZipFile, EOFError, ...)
        logger.warning("%s is unreadable (%s: %s); it is treated as missing", path, type(exc).__name__, exc)
        return None
    return arrays


def cached_keyed_arrays(path: str | os.PathLike, key: str, names: Iterable[str],
                        compute: Callable[[], dict[str, np.ndarray]], what: str) -> dict[str, np.ndarray]:
    """The arrays ``names`` stored in ``path`` for ``key``; else ``compute()``'s, stored there. A
    store that cannot be written costs the cache, never the result: it is logged and the arrays
    are returned all the same (the lexicons of notebook 01 §6, the erasers' fit text of notebook 05 §5).
    ``what`` names the arrays in that message."""
    stored = read_keyed_arrays(path, key)
    if stored is not None and set(stored) == set(names):
        return stored
    arrays = compute()
    try:
        write_keyed_arrays(path, key, **arrays)
    except OSError as exc:  # the next run computes them again
        logger.warning("could not store %s in %s (%s)", what, path, exc)
    return arrays
