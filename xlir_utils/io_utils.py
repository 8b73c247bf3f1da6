"""Atomic writes, crash recovery and keyed array files: nothing the kit writes is ever half there.

A file is written to a temporary file beside its target (``.<name>.<pid>.<random>.tmp``,
:func:`atomic_output`), fsynced, then renamed over the target with ``os.replace``; the folder is
fsynced so the rename survives a crash. A kill mid-write leaves the previous file intact; the
orphaned temporary file names its writer's pid, so the next write to that folder removes it once
that process is gone (:func:`sweep_stale_temps`). A full disk or a read-only folder raises
:class:`~xlir_utils.errors.WriteError`, naming the file and the fix. A folder is replaced as a
unit by :func:`atomic_replace_dir`, built in a folder of its own process, which also finishes or
undoes a swap that a kill interrupted. Used by every step that writes (notebooks 01-05:
processed tables, checkpoints, models, adapters, caches, results).

:func:`exclusive_lock` keeps one writer per run folder, store folder or results folder. Digests
of saved files live in :mod:`xlir_utils.file_digests`, the keyed array store in
:mod:`xlir_utils.keyed_arrays`.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import BusyError, WriteError

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


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}


def write_error(path: str | os.PathLike, exc: OSError) -> OSError:
    """``exc`` as a :class:`~xlir_utils.errors.WriteError` naming ``path`` and the fix when the disk
    is full or the folder is read-only or not writable; any other error as it is."""
    if isinstance(exc, WriteError) or exc.errno not in _DISK_FULL | _NOT_WRITABLE:
        return exc
    path = Path(path)
    if exc.errno in _DISK_FULL:
        problem, fix = "the disk is full", f"free some space on the disk that holds {path.parent}"
    else:
        problem, fix = f"{path.parent} is read-only or not writable", "make that folder writable"
    err = WriteError(f"could not write {path}: {problem} ({exc.strerror or exc}). To fix: {fix}, or set "
                     "XLIR_CACHE_DIR (caches) or XLIR_ROOT (runs, results) to a writable folder with room, "
                     "and run again; the previous version of the file, if any, is intact.")
    err.errno = exc.errno
    return err


def _disk_is_full(path: Path) -> bool:
    """Whether the disk holding ``path`` has less than 1 MiB left."""
    try:
        return shutil.disk_usage(path).free < 2**20
    except OSError:
        return False


def _write_failure(exc: BaseException, where: Path) -> OSError | None:
    """The full disk or unwritable folder behind a writer's error at ``where``: an ``OSError``
    with such an errno in the error or its causes, or, for a ``RuntimeError`` (torch reports
    ENOSPC as ``unexpected pos``, FAISS as a failed write) while the disk is full, an ENOSPC that
    quotes it; else None."""
    seen, cause = set(), exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno in _DISK_FULL | _NOT_WRITABLE:
            return cause
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, RuntimeError) and _disk_is_full(where):
        return OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)}; the writer said: {exc}")
    return None


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """The one atomic write: yields a temporary file beside ``path`` (:func:`new_temp_file`) for the
    caller to write by name (a download, a FAISS index); on a normal exit it is fsynced, given the
    mode of the file it replaces (0644 for a new one) and renamed over ``path``; on an error or an
    interrupt it is removed and ``path`` is left as it was.

    Raises:
        WriteError: the disk is full, or the folder is read-only or not writable (also an
            ``OSError``; the message names the file and the fix, the original error is chained),
            whether the writer raised an ``OSError`` or (torch, FAISS) a ``RuntimeError``.

    Example::

        with atomic_output(folder / "index.faiss") as tmp:
            faiss.write_index(index, str(tmp))
    """
    path = Path(path)
    try:
        tmp = new_temp_file(path)
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    except OSError as exc:
        raise write_error(path, exc) from exc
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, mode)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException as exc:
        failure = _write_failure(exc, tmp.parent) if isinstance(exc, Exception) else None
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if failure is not None and not isinstance(exc, WriteError):
            raise write_error(path, failure) from exc
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


def table_bytes(df: pd.DataFrame, parquet: bool, **csv_kwargs) -> bytes:
    """A DataFrame as Parquet (no index, zstd) or CSV (no index unless asked): the bytes every
    table write of the kit stores."""
    if parquet:
        buffer = io.BytesIO()
        df.to_parquet(buffer, index=False, compression="zstd")
        return buffer.getvalue()
    return df.to_csv(**{"index": False, **csv_kwargs}).encode()


def atomic_write_csv(df: pd.DataFrame, path: str | os.PathLike, **kwargs) -> Path:
    """Write a DataFrame as CSV (no index by default), atomically."""
    return atomic_write_bytes(table_bytes(df, False, **kwargs), path)


def atomic_write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a DataFrame as Parquet (no index), atomically."""
    return atomic_write_bytes(table_bytes(df, True), path)


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


def _remove(path: Path) -> None:
    """Remove a folder tree, a file or a (possibly dangling) symlink; absent is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        path.unlink(missing_ok=True)


def recover_dir(folder: str | os.PathLike) -> Path:
    """Finish or undo a folder swap that a kill interrupted (see :func:`atomic_replace_dir`).

    If ``folder`` is missing but its ``.old`` copy (a folder) exists, the kill came between the two
    renames: the old (complete) version is put back. A leftover ``.old`` beside a present folder, a
    ``.old`` that is not a folder (a file, a dangling symlink) and a ``.tmp`` left by earlier
    versions of the kit are removed. Safe to call any time; returns ``folder``.
    """
    folder = Path(folder)
    old, tmp = _side(folder, ".old"), _side(folder, ".tmp")
    if os.path.lexists(old):
        if old.is_dir() and not old.is_symlink() and not os.path.lexists(folder):
            old.rename(folder)
            logger.warning("%s: restored the previous version after an interrupted replacement", folder)
        else:
            _remove(old)
    _remove(tmp)
    return folder


def atomic_replace_dir(folder: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Fill a folder with ``write(build)`` beside it, then swap it in for ``folder``.

    ``build`` does not exist yet; it lies in a build folder of this process
    (:func:`new_temp_dir`, removed by :func:`sweep_stale_temps` once the process is gone). The
    old folder is moved aside (``<folder>.old``) before the rename and removed after it, so
    ``folder`` is either the old or the new complete version; an interrupted ``write`` leaves the
    old one, and the next call (or :func:`recover_dir`) clears what an interrupted swap left.

    Raises:
        WriteError: the disk filled or the folder is not writable, whether ``write`` raised an
            ``OSError`` or (as torch does) a ``RuntimeError`` on a full disk.
    """
    try:
        folder = recover_dir(folder)
        old = _side(folder, ".old")
        work = new_temp_dir(folder)
    except OSError as exc:
        raise write_error(folder, exc) from exc
    try:
        build = work / folder.name
        write(build)
        if os.path.lexists(folder):
            folder.rename(old)
        build.rename(folder)
    except BaseException as exc:
        failure = _write_failure(exc, work) if isinstance(exc, Exception) else None
        shutil.rmtree(work, ignore_errors=True)
        recover_dir(folder)  # puts the old version back if the second rename failed
        if failure is not None and not isinstance(exc, WriteError):
            raise write_error(folder, failure) from exc
        raise
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(folder.parent)
    return folder


def json_digest(obj, length: int = 16) -> str:
    """A short sha256 of ``obj`` as sorted-key JSON (recipe digests that key reuse of runs and caches)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


# ------------------------------------------------------------------------ one writer at a time
_HELD: dict[Path, tuple[int, int]] = {}  # lock files this process holds -> (pid, nesting depth)


def _holder(fd: int) -> str:
    return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"


@contextmanager
def exclusive_lock(path: str | os.PathLike, what: str, *, wait: bool = False) -> Iterator[None]:
    """Hold the advisory lock ``<path>.lock`` for the block: one writer per run folder, store
    folder or results folder (notebooks 02-05, the command lines). The lock is the kernel's
    (``fcntl.flock``), so it is released when its process dies, however it dies; a process may
    take a lock it already holds again (a forked child is another process).

    Args:
        path: what is written (the lock file lies beside it).
        what: what it is, for the messages (``"run full-hybrid-s13"``).
        wait: wait for another holder to finish (logged with its pid) instead of raising.

    Raises:
        BusyError: another live process holds it (and ``wait`` is off); the message names
            ``what`` and that process.
    """
    lock = Path(path)
    lock = lock.with_name(lock.name + ".lock")
    key = Path(os.path.abspath(lock))
    pid = os.getpid()
    if key in _HELD and _HELD[key][0] == pid:
        _HELD[key] = (pid, _HELD[key][1] + 1)
        try:
            yield
        finally:
            _HELD[key] = (pid, _HELD[key][1] - 1)
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            if not wait:
                raise BusyError(f"{what} is being written by process {holder} ({lock}): wait for it to finish, "
                                f"or stop it (kill {holder}) and run again.") from None
            logger.info("waiting for process %s, which is writing %s (%s)", holder, what, lock)
            fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    try:
        try:  # the holder's pid, for the others' messages (a full disk leaves it out)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(pid).encode(), 0)
        except OSError:
            pass
        _HELD[key] = (pid, 1)
        yield
    finally:
        _HELD.pop(key, None)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
