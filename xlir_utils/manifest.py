"""The results manifest: the SHA-256 of every file the kit writes under ``results/``, and which
run of which notebook wrote it (every notebook, ``make figures``, ``make recipe-study``).

``results/<profile>/manifest.json`` maps each file (relative to the results folder) to its
``sha256``, ``bytes``, ``writer`` (``notebook 04``) and ``run`` (one id per process, so all tables
of one notebook run share it). A file and its entry are written under one lock
(:func:`xlir_utils.io_utils.exclusive_lock`), the file first; a reader verifies the file against
its entry (:func:`verify`), so a damaged, truncated or hand-edited result is never drawn from.
A kill between a notebook's writes leaves its tables with two run ids: :func:`mixed_runs` says so.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from .errors import DamagedFileError
from .io_utils import atomic_write_bytes, atomic_write_json, exclusive_lock

MANIFEST_NAME = "manifest.json"
RUN_ID = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}"  # this process's writes


def _entries(folder: Path) -> dict:
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DamagedFileError(f"{path} is unreadable ({exc}); restore it with `git checkout -- {path}` "
                               "(quick profile) or rerun the notebooks that write results/") from exc


def write_result(folder: Path, name: str, data: bytes, writer: str) -> Path:
    """Write ``data`` to ``folder/name`` atomically and record its SHA-256, writer and run in the
    manifest, under the folder's lock (notebooks 01-05 through :func:`xlir_utils.outputs.save_table`)."""
    folder = Path(folder)
    with exclusive_lock(folder / MANIFEST_NAME, f"the results in {folder}"):
        path = atomic_write_bytes(data, folder / name)
        files = _entries(folder)
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "writer": writer,
                       "run": RUN_ID}
        atomic_write_json({"files": dict(sorted(files.items()))}, folder / MANIFEST_NAME)
    return path


def verify(folder: Path, name: str, writer: str) -> bytes:
    """The bytes of ``folder/name`` after checking them against the manifest (notebooks 04-05,
    ``make figures``).

    Raises:
        DamagedFileError: the file is not in the manifest, or its SHA-256 differs from the one
            recorded when it was written; the message names the file and how to restore or
            rewrite it.
    """
    folder = Path(folder)
    path = folder / name
    data = path.read_bytes()
    entry = _entries(folder).get(name)
    fix = (f"restore it with `git checkout -- {path}` if it is a committed result, or rewrite it by running "
           f"{writer} again")
    if entry is None:
        raise DamagedFileError(f"{path} is not recorded in {folder / MANIFEST_NAME}, so it cannot be verified: {fix}.")
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise DamagedFileError(f"{path} does not match the SHA-256 recorded when it was written ({len(data)} bytes, "
                               f"{entry['bytes']} recorded): it is damaged or was edited; {fix}.")
    return data


def mixed_runs(folder: Path) -> dict[str, list[str]]:
    """Writers whose files in ``folder`` come from more than one run (a notebook killed between two
    writes, then partly rerun): ``{writer: [files of its older runs]}`` (``make figures`` warns)."""
    by_writer: dict[str, dict[str, list[str]]] = {}
    for name, entry in _entries(Path(folder)).items():
        by_writer.setdefault(entry["writer"], {}).setdefault(entry["run"], []).append(name)
    out = {}
    for writer, runs in by_writer.items():
        if len(runs) > 1:
            newest = max(runs)
            out[writer] = sorted(n for run, names in runs.items() if run != newest for n in names)
    return out
