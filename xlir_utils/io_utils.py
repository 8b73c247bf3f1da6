"""Atomic writes, crash recovery and keyed array files: nothing the kit writes is ever half there.

A file is written to a temporary file beside its target (``.<name>.<pid>.<random>.tmp``,
:func:`atomic_output`), fsynced, then renamed over the target with ``os.replace``; the folder is
fsynced so the rename survives a crash. A kill mid-write leaves the previous file intact; the
orphaned temporary file names its writer's pid, so the next write to that folder removes it once
that process is gone (:func:`sweep_stale_temps`). A folder is replaced as a unit by
:func:`atomic_replace_dir`, which also finishes or undoes a swap that a kill interrupted. Used by
every step that writes (notebooks 01-05: processed tables, checkpoints, models, adapters, caches,
results).

Caches of arrays (embeddings, shards) go through one store: :func:`write_keyed_arrays` records the
key of what produced the arrays and a SHA-256 of them; :func:`read_keyed_arrays` returns them only
for that key and after checking that SHA-256, so a damaged file is recomputed, never trusted.
Texts enter keys through :func:`text_digest`.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

_TEMP = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")  # .<name>.<pid>.<random>.tmp


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but not ours to signal
        return True
    return True


def sweep_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the kit's temporary files and build folders in ``folder`` whose writing process no
    longer runs (:func:`temp_prefix` names them).

    They are what a kill during an atomic write leaves (a checkpoint can be 250 MB, a model
    conversion 600 MB). Those of a live process, and everything not named like the kit's
    temporaries, are left alone.
    """
    folder = Path(folder)
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m and not _pid_alive(int(m.group(1))):
            try:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed.append(entry)
            except OSError:
                pass
    if removed:
        logger.info("removed %d stale temporary file(s) in %s", len(removed), folder)
    return removed


def temp_prefix(name: str) -> str:
    """The prefix of the kit's temporary files for ``name`` (mkstemp/mkdtemp, with suffix ``.tmp``)."""
    return f".{name}.{os.getpid()}."


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_temp_file(path: str | os.PathLike) -> Path:
    """A new empty temporary file beside ``path``, named so that :func:`sweep_stale_temps` knows it
    (stale ones in that folder are swept first). Prefer :func:`atomic_output`, which also installs it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name), suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def new_temp_dir(path: str | os.PathLike) -> Path:
    """A new empty temporary folder beside ``path`` to build it in, named so that
    :func:`sweep_stale_temps` removes it once its process is gone (a model conversion)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(path.parent)
    return Path(tempfile.mkdtemp(dir=path.parent, prefix=temp_prefix(path.name), suffix=".tmp"))


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """The one atomic write: yields a temporary file beside ``path`` (:func:`new_temp_file`) for the
    caller to write by name (a download, a FAISS index); on a normal exit it is fsynced, given the
    mode of the file it replaces (0644 for a new one) and renamed over ``path``; on an error or an
    interrupt it is removed and ``path`` is left as it was.

    Example::

        with atomic_output(folder / "index.faiss") as tmp:
            faiss.write_index(index, str(tmp))
    """
    path = Path(path)
    tmp = new_temp_file(path)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, mode)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_output`); returns the path. The new
    file keeps the mode of the file it replaces (0644 for a new one)."""
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
    return Path(path)


def _json_default(obj):
    """NumPy scalars and arrays as numbers and lists, paths and anything else as strings."""
    if hasattr(obj, "tolist"):  # numpy scalar or array, torch tensor
        return obj.tolist()
    return str(obj)


def atomic_write_json(obj, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented UTF-8 JSON, atomically (NumPy values become numbers)."""
    return atomic_write_bytes(json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default).encode(), path)


def atomic_write_csv(df: pd.DataFrame, path: str | os.PathLike, **kwargs) -> Path:
    """Write a DataFrame as CSV (no index by default), atomically."""
    kwargs.setdefault("index", False)
    return atomic_write_bytes(df.to_csv(**kwargs).encode(), path)


def atomic_write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a DataFrame as Parquet (no index), atomically."""
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    return atomic_write_bytes(buffer.getvalue(), path)


def atomic_write_npz(path: str | os.PathLike, **arrays) -> Path:
    """Write arrays as an uncompressed ``.npz``, atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return atomic_write_bytes(buffer.getvalue(), path)


def atomic_write_torch(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` an object (a state dict, a checkpoint), atomically."""
    import torch  # lazy: the data layer and the reports use io_utils without loading torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(buffer.getvalue(), path)


def _side(folder: Path, suffix: str) -> Path:
    return folder.with_name(folder.name + suffix)


def recover_dir(folder: str | os.PathLike) -> Path:
    """Finish or undo a folder swap that a kill interrupted (see :func:`atomic_replace_dir`).

    If ``folder`` is missing but its ``.old`` copy exists, the kill came between the two renames:
    the old (complete) version is put back. A leftover ``.old`` beside a present folder and any
    ``.tmp`` build folder are removed. Safe to call any time; returns ``folder``.
    """
    folder = Path(folder)
    old, tmp = _side(folder, ".old"), _side(folder, ".tmp")
    if old.exists():
        if folder.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.rename(folder)
            logger.warning("%s: restored the previous version after an interrupted replacement", folder)
    if tmp.exists():
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def atomic_replace_dir(folder: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Fill a folder with ``write(tmp)`` beside it, then swap it in for ``folder``.

    The old folder is moved aside before the rename and removed after it, so ``folder`` is
    either the old or the new complete version; an interrupted ``write`` leaves the old one, and
    the next call (or :func:`recover_dir`) clears what an interrupted swap left.
    """
    folder = recover_dir(folder)
    tmp, old = _side(folder, ".tmp"), _side(folder, ".old")
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(folder.parent)
    return folder


def json_digest(obj, length: int = 16) -> str:
    """A short sha256 of ``obj`` as sorted-key JSON (recipe digests that key reuse of runs and caches)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


# ------------------------------------------------------------------------ keyed array store
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
