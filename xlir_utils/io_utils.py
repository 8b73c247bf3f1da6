"""Atomic writes and crash recovery: nothing the kit writes is ever half there.

A file is written to a temporary file beside its target (``.<name>.<pid>.<random>.tmp``),
fsynced, then renamed over the target with ``os.replace``; the folder is fsynced so the rename
survives a crash. A kill mid-write leaves the previous file intact; the orphaned temporary file
names its writer's pid, so the next write to that folder removes it once that process is gone
(:func:`sweep_stale_temps`). A folder is replaced as a unit by :func:`atomic_replace_dir`, which
also finishes or undoes a swap that a kill interrupted. Used by every step that writes
(notebooks 01-05: processed tables, checkpoints, models, adapters, caches, results).
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
from collections.abc import Callable
from pathlib import Path

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


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path. The new file keeps the mode of the
    file it replaces (0644 for a new one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(path.parent)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


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
    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return atomic_write_bytes(buffer.getvalue(), path)


def atomic_write_torch(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` an object (a state dict, a checkpoint), atomically."""
    import torch

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
