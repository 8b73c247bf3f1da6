"""Atomic writes: a temporary file in the target folder, fsync, then ``os.replace``.

A crash mid-write leaves the previous file intact and no partial file behind. The new file
keeps the mode of the file it replaces (0644 for a new one), and the folder is fsynced so
the rename itself survives a crash.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd


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


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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


def atomic_replace_dir(folder: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Fill a folder with ``write(tmp)`` beside it, then swap it in for ``folder``.

    The old folder is moved aside before the rename and removed after it, so ``folder`` is
    either the old or the new complete version; an interrupted ``write`` leaves the old one.
    """
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    old = folder.with_name(folder.name + ".old")
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def json_digest(obj, length: int = 16) -> str:
    """A short sha256 of ``obj`` as sorted-key JSON (recipe digests that key reuse of runs and caches)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]
