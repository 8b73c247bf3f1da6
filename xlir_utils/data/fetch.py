"""Get raw files: from the offline directory (``XLIR_DATA_DIR``) or the canonical address.

Every file is verified against the registry's sha256 wherever it comes from. Downloads go
to a temporary file beside the target (:func:`xlir_utils.io_utils.atomic_output`) and replace it,
fsynced, only once verified, so a good file is never overwritten by a bad one and an interrupted
download leaves nothing behind (or, after a kill, a temporary file the next write there sweeps).
"""
from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from .. import paths
from ..errors import XlirError
from ..file_digests import sha256_of
from ..io_utils import atomic_output
from .registry import REGISTRY, RemoteFile, files_of


class DataError(XlirError):
    """A raw data file is missing, corrupt or unreadable; the message says what to do."""


class ChecksumMismatch(DataError):
    """A data file's digest is not the one recorded for it."""


class DataUnavailable(DataError):
    """A data file is neither here, nor in ``XLIR_DATA_DIR``, nor downloadable."""


def offline_only() -> bool:
    """True when ``XLIR_OFFLINE`` forbids downloads (1, true, yes)."""
    return os.environ.get("XLIR_OFFLINE", "").strip().lower() in {"1", "true", "yes"}


def offline_dir_or_none() -> Path | None:
    """``XLIR_DATA_DIR`` as a folder, or None when unset; a set value that is not a folder
    raises :class:`DataUnavailable` saying where it points and what to do."""
    offline = paths.offline_data_dir()
    if offline is not None and not offline.is_dir():
        raise DataUnavailable(
            f"XLIR_DATA_DIR is set to {os.environ.get('XLIR_DATA_DIR')!r} ({offline}), which is not a folder. "
            "Point it at a folder of the raw files in the offline layout (lareqa/, ntrex128/, tatoeba-laser/, "
            "mkqa-mia-dev/; the README's Data section), or unset it to download from the canonical addresses."
        )
    return offline


def offline_dir_state(relpath: str) -> str:
    """How ``XLIR_DATA_DIR`` stands for a file it does not provide (notebook 01 §1): unset, or set
    (to which folder, empty or not) without ``relpath``; a clause for error messages."""
    offline = paths.offline_data_dir()
    if offline is None:
        return "XLIR_DATA_DIR is not set"
    empty = offline.is_dir() and not any(offline.iterdir())
    return (f"XLIR_DATA_DIR is already set, to {offline}{' (an empty folder)' if empty else ''}, "
            f"but {offline / relpath} is not there")


def _from_offline_dir(remote: RemoteFile, root: Path) -> Path | None:
    source = root / remote.path
    if not source.is_file():
        return None
    actual = sha256_of(source)
    if actual != remote.sha256:
        raise ChecksumMismatch(
            f"{source} has sha256 {actual}, expected {remote.sha256} (registry entry {remote.path}). "
            f"The offline copy is corrupt or a different version: replace it with the file from "
            f"{remote.url}, or unset XLIR_DATA_DIR to download it."
        )
    return source


def _copy(source, out, digest, bar=None) -> None:
    """Copy a binary stream into ``out`` in blocks, hashing what is written."""
    while block := source.read(1 << 16):
        out.write(block)
        if digest is not None:
            digest.update(block)
        if bar is not None:
            bar.update(len(block))


def _download(remote: RemoteFile, target: Path, timeout: float = 30.0) -> None:
    digest = hashlib.sha256()
    try:
        with atomic_output(target) as tmp, open(tmp, "wb") as out, \
                urllib.request.urlopen(remote.url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=remote.path, leave=False) as bar:
                if not remote.member:
                    _copy(resp, out, digest, bar)
                else:  # the file is one member of a zip archive: fetch the archive, extract the member
                    with tempfile.TemporaryFile() as archive_file:
                        _copy(resp, archive_file, None, bar)
                        archive_file.seek(0)
                        with zipfile.ZipFile(archive_file) as archive, archive.open(remote.member) as member:
                            _copy(member, out, digest)
            if digest.hexdigest() != remote.sha256:  # raised inside: the temporary file is removed
                source = f"{remote.member} in {remote.url}" if remote.member else remote.url
                raise ChecksumMismatch(
                    f"Downloaded {source} has sha256 {digest.hexdigest()}, expected {remote.sha256}. "
                    "The upstream file changed or the download was corrupted; nothing was written. "
                    "Retry, or put a verified copy in XLIR_DATA_DIR."
                )
    except XlirError:
        raise
    except (urllib.error.URLError, OSError, TimeoutError, zipfile.BadZipFile, KeyError) as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EACCES, errno.EROFS):
            raise DataError(  # a local disk problem, not the network's
                f"Could not write {target} ({exc}): free space in or make {paths.raw_dir()} writable, or set "
                "XLIR_DATA_DIR to a folder of the raw files in the offline layout (the README's Data section), which is "
                "read in place."
            ) from exc
        raise DataUnavailable(
            f"Could not download {remote.path} from {remote.url} ({exc}). Offline? {_offline_fix(remote)}"
        ) from exc


def _offline_fix(remote: RemoteFile) -> str:
    """What to do about XLIR_DATA_DIR when ``remote`` is missing: set it, or complete the folder it names."""
    offline = paths.offline_data_dir()
    if offline is None:
        return (f"XLIR_DATA_DIR is not set: set it to a folder of the raw files in the offline layout (the "
                f"README's Data section; this file is {remote.path} there), e.g. `export XLIR_DATA_DIR=/path/to/data`.")
    return (f"{offline_dir_state(remote.path)}: put the upstream file at {offline / remote.path} (its address: "
            f"{remote.url}), or point XLIR_DATA_DIR at a complete folder in the offline layout.")


def fetch(remote: RemoteFile | str) -> Path:
    """Return a verified local path for a registry file.

    Order: a verified copy under ``data/raw``; else the offline directory (read in place,
    verified); else a download from the canonical address (unless ``XLIR_OFFLINE=1``).
    """
    if isinstance(remote, str):
        if remote not in REGISTRY:
            raise DataError(f"{remote!r} is not a registered data file; see xlir_utils.data.registry.")
        remote = REGISTRY[remote]
    target = paths.raw_dir() / remote.path
    if target.is_file() and sha256_of(target) == remote.sha256:
        return target
    offline = offline_dir_or_none()
    if offline is not None:
        found = _from_offline_dir(remote, offline)
        if found is not None:
            return found
    if offline_only():
        raise DataUnavailable(
            f"{remote.path} is not available offline (XLIR_OFFLINE is set): it is not in "
            f"{paths.raw_dir()}, and {_offline_fix(remote)} Or unset XLIR_OFFLINE to download {remote.url}."
        )
    _download(remote, target)
    return target


def fetch_all(dataset: str) -> list[Path]:
    """Fetch every registered file of a dataset (notebook 01 §1)."""
    return [fetch(f) for f in files_of(dataset)]
