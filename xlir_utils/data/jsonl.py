"""JSON-lines files (Mewsli-X, the MIRACL corpus): one JSON object per line, read as a stream.

A line that is not a JSON object raises a :class:`~xlir_utils.data.fetch.DataError` naming the
file and the line's number in it (``json``'s own line number counts within one line).
"""
from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

from .fetch import DataError


def _opener(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def json_lines(path: str | Path, what: str = "a JSON object") -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-empty line of ``path`` (gzipped if it ends in ``.gz``);
    ``what`` describes a line for the error messages (notebook 04 §9, the large-scale suites)."""
    path = Path(path)
    n = 0
    try:
        with _opener(path) as handle:
            for n, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    where = f" at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
                    reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                    raise DataError(f"{path}, line {n}: not valid JSON ({reason}{where}); expected {what} per "
                                    "line. The file is truncated or corrupt: prepare or fetch it again.") from None
                if not isinstance(record, dict):
                    raise DataError(f"{path}, line {n}: expected {what}, got {line.strip()[:80]!r}")
                yield n, record
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}, line {n + 1}: not UTF-8 text ({exc.reason}); the file is corrupt: "
                        "prepare or fetch it again.") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}, after line {n}: the gzip stream is damaged ({exc}); delete the file "
                        "and fetch it again.") from None
