"""Atomic writes: a temporary file in the target folder, fsync, then ``os.replace``.

A crash mid-write leaves the previous file intact and no partial file behind.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(obj, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented UTF-8 JSON, atomically."""
    return atomic_write_bytes(json.dumps(obj, indent=2, ensure_ascii=False, default=str).encode(), path)


def atomic_write_csv(df: pd.DataFrame, path: str | os.PathLike, **kwargs) -> Path:
    """Write a DataFrame as CSV (no index by default), atomically."""
    kwargs.setdefault("index", False)
    return atomic_write_bytes(df.to_csv(**kwargs).encode(), path)
