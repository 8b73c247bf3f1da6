"""Digests of the files a run saved, recorded in its ``run.json`` and checked before it is reused,
so a damaged model is trained again rather than trusted (notebooks 02-03)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def file_digest(path: str | os.PathLike, digest, chunk: int = 1 << 22) -> str:
    """Feed a file to a hashlib object in chunks; its hex digest."""
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex): downloads, processed tables, converted and saved models."""
    return file_digest(path, hashlib.sha256())


def folder_digests(root: str | os.PathLike, *subfolders: str) -> dict[str, dict]:
    """``{path relative to root: {"sha256", "bytes"}}`` of every file under ``root/<subfolder>``
    (or one file ``root/<name>``), for a run record: what a finished run saved (notebooks 02-03)."""
    root = Path(root)
    out = {}
    for sub in subfolders:
        top = root / sub
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for f in files:
            out[f.relative_to(root).as_posix()] = {"sha256": sha256_of(f), "bytes": f.stat().st_size}
    return out


def digest_problems(root: str | os.PathLike, files: dict[str, dict], *, full: bool = True) -> list[str]:
    """What no longer matches the digests :func:`folder_digests` recorded under ``root``: missing
    files, other sizes and (with ``full``) other SHA-256; empty when everything is intact."""
    root = Path(root)
    problems = []
    for rel, want in sorted(files.items()):
        f = root / rel
        if not f.is_file():
            problems.append(f"{rel} is missing")
        elif f.stat().st_size != want["bytes"]:
            problems.append(f"{rel} has {f.stat().st_size} bytes, not {want['bytes']}")
        elif full and sha256_of(f) != want["sha256"]:
            problems.append(f"{rel} fails its SHA-256")
    return problems
