"""Files of a Hugging Face *dataset* repository, verified wherever they come from (mMARCO, MIRACL).

Where a file comes from, in order: a copy this kit downloaded and verified before
(``data/raw/<folder>/<path>``); the offline directory (``XLIR_DATA_DIR/<folder>/<path>``,
verified against the ``SHA256SUMS`` file there, in ``sha256sum`` format; without one the files are
used unverified, with a warning); else the hub (``hf_hub_download``, unless ``XLIR_OFFLINE=1``),
every file from one commit, verified against the digest the hub publishes (its Git LFS sha256, or
its git blob id for files not in LFS; a bad download is deleted). The revision is resolved to a
commit once per process and recorded beside each download.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import re
from pathlib import Path

import huggingface_hub  # its functions load on first use (huggingface_hub imports lazily)

from .. import paths
from ..io_utils import atomic_write_json
from ..file_digests import file_digest
from .fetch import (ChecksumMismatch, DataError, DataUnavailable, offline_dir_or_none,
                    offline_dir_state, offline_only, sha256_of)

logger = logging.getLogger(__name__)


def read_sha256sums(root: Path) -> dict[str, str] | None:
    """``root/SHA256SUMS`` (``sha256sum`` format) as {relative path: sha256}; None if there is none."""
    sums = root / "SHA256SUMS"
    if not sums.is_file():
        return None
    out = {}
    for n, line in enumerate(sums.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            raise DataError(f"{sums}:{n}: expected '<sha256>  <path>' (the format of sha256sum), got {line[:80]!r}")
        name = parts[1].strip().lstrip("*")
        out[name[2:] if name.startswith("./") else name] = parts[0].lower()
    return out


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file (what the hub publishes for files not stored in LFS)."""
    return file_digest(path, hashlib.sha1(f"blob {path.stat().st_size}\0".encode()))


class HubDataset:
    """One hub dataset repository: ``repo``, the ``revision`` read, the local ``folder`` name, and
    who needs it (for messages). Methods :meth:`commit`, :meth:`digest` and :meth:`download` talk
    to the hub (tests replace them); :meth:`file` is what loaders call."""

    def __init__(self, repo: str, folder: str, needed_by: str, revision: str = "main", note: str = ""):
        self.repo, self.folder, self.needed_by, self.revision, self.note = repo, folder, needed_by, revision, note
        self._commit: str | None = None

    def commit(self) -> str:
        """The commit ``revision`` points to, resolved once per process (all files from one commit)."""
        if self._commit is None:
            info = huggingface_hub.HfApi().dataset_info(self.repo, revision=self.revision, files_metadata=False)
            self._commit = info.sha
        return self._commit

    @property
    def resolved_commit(self) -> str | None:
        """The commit read so far in this process (None before any download)."""
        return self._commit

    def digest(self, relpath: str, commit: str) -> tuple[str, str]:
        """(kind, value) the hub publishes for a file: its LFS sha256, else its git blob sha1."""
        entries = huggingface_hub.HfApi().get_paths_info(self.repo, [relpath], repo_type="dataset", revision=commit)
        if not entries:
            raise FileNotFoundError(f"{relpath} is not in {self.repo}@{commit}")
        lfs = getattr(entries[0], "lfs", None)
        return ("sha256", lfs.sha256) if lfs is not None else ("git-sha1", entries[0].blob_id)

    def download(self, relpath: str, commit: str) -> Path:
        return Path(huggingface_hub.hf_hub_download(self.repo, relpath, repo_type="dataset", revision=commit,
                                    local_dir=paths.raw_dir() / self.folder))

    def _check(self, path: Path, kind: str, expected: str, origin: str, *, delete: bool = False) -> Path:
        actual = sha256_of(path) if kind == "sha256" else git_blob_sha1(path)
        if actual != expected:
            if delete:
                path.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"{path} has {kind} {actual}, expected {expected} ({origin}). The copy is corrupt or a "
                f"different version{' and was deleted; run again to download it anew' if delete else ''}: "
                f"replace it with the file from the hub dataset {self.repo}."
            )
        return path

    def _failure(self, relpath: str, exc: BaseException) -> str:
        return (
            f"Could not download {relpath} from the hub dataset {self.repo} ({type(exc).__name__}: {exc}). "
            f"Offline? {self.needed_by}; run it with internet{self.note}, or put the files under "
            f"XLIR_DATA_DIR/{self.folder}/ in the hub repository's layout ({self._offline_state(relpath)})."
        )

    def _offline_state(self, relpath: str) -> str:
        return offline_dir_state(f"{self.folder}/{relpath}")

    def file(self, relpath: str) -> Path:
        """A local, verified path for one file (``relpath`` as in the hub repository)."""
        local = paths.raw_dir() / self.folder / relpath
        marker = local.with_name(local.name + ".verified.json")
        if local.is_file() and marker.is_file():
            return local  # downloaded and verified here before
        offline = offline_dir_or_none()
        if offline is not None and (offline / self.folder / relpath).is_file():
            root = offline / self.folder
            sums = read_sha256sums(root)
            if sums is None:
                logger.warning("%s: no SHA256SUMS in %s, so the file is used unverified", relpath, root)
                return root / relpath
            if relpath not in sums:
                raise DataError(
                    f"{root / 'SHA256SUMS'} has no entry for {relpath}: add one (`sha256sum {relpath} >> "
                    "SHA256SUMS` in that folder) or remove SHA256SUMS to use the files unverified."
                )
            return self._check(root / relpath, "sha256", sums[relpath], str(root / "SHA256SUMS"))
        if offline_only():
            raise DataUnavailable(
                f"{self.repo} file {relpath} is not available offline: it is not in {local} (a download by "
                f"this kit), and {self._offline_state(relpath)}. {self.needed_by}: run it with internet (hub "
                f"dataset {self.repo}{self.note}), or put the files under XLIR_DATA_DIR/{self.folder}/ in the "
                "hub repository's layout."
            )
        try:
            commit = self.commit()
            kind, expected = self.digest(relpath, commit)
            got = self.download(relpath, commit)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EACCES, errno.EROFS):
                raise  # a local disk problem, not the network's
            raise DataUnavailable(self._failure(relpath, exc)) from exc
        except Exception as exc:  # the hub client's own errors (offline mode, HTTP errors, gated repo)
            raise DataUnavailable(self._failure(relpath, exc)) from exc
        self._check(got, kind, expected, f"the hub's {kind} for {self.repo}@{commit}", delete=True)
        atomic_write_json({"repo": self.repo, "commit": commit, kind: expected}, marker)
        return got

    def source_id(self) -> str:
        """Where the files are read from, for cache keys: the offline folder (and its checksums) or the hub."""
        offline = paths.offline_data_dir()
        if offline is not None and (offline / self.folder).is_dir():
            sums = offline / self.folder / "SHA256SUMS"
            tag = hashlib.sha256(sums.read_bytes()).hexdigest()[:12] if sums.is_file() else "unverified"
            return f"offline:{offline / self.folder}:{tag}"
        return f"hub:{self.repo}@{self.revision}"
