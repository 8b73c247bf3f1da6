"""What determines a training run (notebook 02 §4): its :class:`RunSpec`, whose digest keys the
run folder's reuse, and the record of a finished run with that digest.

A finished run's record (``run.json``) also holds the SHA-256 and size of every file it saved
(``files``, beside the spec, never in the digest): a run is reused only while they match; a
damaged one is reported and trained again. One process writes a run folder at a time
(:func:`run_lock`).

The training loop (:mod:`.loop`) checks and writes records; the entry points (:mod:`.runs`,
the adapter variants, the recipe study) build specs.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from ..config import SAMPLINGS, TrainConfig
from ..errors import BusyError
from ..file_digests import digest_problems, folder_digests
from ..io_utils import atomic_write_json, exclusive_lock, json_digest, recover_dir
from ..sampling import sampling_alpha
from . import distributed as D
from .step import machine_precision

__all__ = ["FILES_KEY", "SAMPLINGS", "RunSpec", "finished_record", "make_spec", "pairs_digest", "record_files",
           "run_lock"]

logger = logging.getLogger(__name__)

FILES_KEY = "files"  # run.json: {path in the run folder: {"sha256", "bytes"}} of what the finished run saved


@dataclass(frozen=True)
class RunSpec:
    """What determines a training run (its hash keys the run folder's reuse)."""

    name: str
    base_model: str
    sampling: str  # "X-X" | "X-Y" | "hybrid"
    alpha: float
    seed: int
    train: TrainConfig
    n_pairs: int
    pairs_digest: str
    extra: str = ""  # e.g. an adapter set-up

    def digest(self) -> str:
        """The recipe digest: a hash of every field (run folders are reused by it)."""
        return json_digest(asdict(self))


_DIGEST_CHUNK = 100_000


def pairs_digest(pairs: pd.DataFrame) -> str:
    """A content hash of the pairs table (row order included)."""
    h = hashlib.sha256()
    for col in ("question_id", "query_lang", "passage_lang", "query", "passage", "negative"):
        if col not in pairs.columns:  # "negative" only where the data brings hard negatives
            continue
        values = pairs[col].astype(str).to_numpy()
        # the digest of "\x1f".join(values), fed in chunks (millions of rows in the paper profile)
        for start in range(0, len(values), _DIGEST_CHUNK):
            if start:
                h.update(b"\x1f")
            h.update("\x1f".join(values[start : start + _DIGEST_CHUNK]).encode())
    return h.hexdigest()[:16]


def resolved_train(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with a precision of ``"auto"`` resolved for this machine: the recipe a run records
    (notebooks 02 §4, 04 §2)."""
    return dataclasses.replace(cfg, precision=machine_precision(cfg.precision)) if cfg.precision == "auto" else cfg


def make_spec(name: str, base_model: str, sampling: str, cfg: TrainConfig, seed: int,
              pairs: pd.DataFrame, alpha: float | None = None, extra: str = "") -> RunSpec:
    """The :class:`RunSpec` of one run (``alpha`` for hybrid defaults to the profile's). A precision
    of ``"auto"`` is resolved here, for this machine's training device, so that the recipe digest
    names the precision the run is trained in (a run made in bf16 elsewhere is not reused as fp32)."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"Unknown sampling {sampling!r}; choose one of {SAMPLINGS}.")
    cfg = resolved_train(cfg)
    a = sampling_alpha(sampling, cfg.alpha if alpha is None else alpha)
    return RunSpec(name, base_model, sampling, a, seed, cfg, len(pairs), pairs_digest(pairs), extra)


def run_lock(run_dir: Path, what: str | None = None) -> AbstractContextManager:
    """One writer per run folder (notebooks 02-03): the lock ``<run_dir>.lock`` for as long as a run
    is trained and saved; a second process gets :class:`~xlir_utils.errors.BusyError` naming the
    first. Under ``torchrun`` only rank 0 takes it."""
    if not D.context().is_main:
        return nullcontext()
    return exclusive_lock(run_dir, what or f"run {Path(run_dir).name}")


def record_files(run_dir: Path, saved: Sequence[str] = ("model",)) -> dict[str, dict]:
    """The ``files`` entry of a finished run's record: SHA-256 and size of every file under
    ``run_dir/<saved>`` (those that exist), computed once when the run finishes (notebooks 02-03)."""
    return folder_digests(run_dir, *[s for s in saved if (Path(run_dir) / s).exists()])


def _rewrite_record(run_dir: Path, read: dict, record: dict, action: str) -> bool:
    """Replace ``run.json`` (still as it was ``read``) by ``record``, unless another process is
    writing the run or has changed it meanwhile; False when it was not replaced."""
    if not D.context().is_main:
        return False
    try:
        with exclusive_lock(run_dir, f"run {run_dir.name}"):
            if json.loads((run_dir / "run.json").read_text()) != read:
                return False
            atomic_write_json(record, run_dir / "run.json")
        return True
    except (BusyError, OSError, ValueError) as exc:
        logger.info("%s: could not %s (%s)", run_dir, action, exc)
        return False


def finished_record(run_dir: Path, digest: str, saved: Sequence[str] = ("model",)) -> dict | None:
    """The record of a finished run with this recipe digest whose saved files are intact, else None
    (notebooks 02-03, before a run is trained; a model folder swap that a kill interrupted is
    finished or undone first).

    The SHA-256 of every file its record lists is checked. A damaged run (a truncated or missing
    file) is reported with a warning naming its folder and marked unfinished, so the caller trains
    it again (from its checkpoint if one is left). A run recorded before files had digests is
    accepted and gets the digests of ``run_dir/<saved>`` recorded now, so later damage is caught.
    """
    run_dir = Path(run_dir)
    recover_dir(run_dir / "model")
    try:
        record = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return None
    if record.get("digest") != digest or not record.get("finished"):
        return None
    if FILES_KEY not in record:  # written before records held digests
        upgraded = {**record, FILES_KEY: record_files(run_dir, saved)}
        return upgraded if _rewrite_record(run_dir, record, upgraded, "record the digests of its files") else record
    problems = digest_problems(run_dir, record[FILES_KEY])
    if not problems:
        return record
    logger.warning("run folder %s is damaged (%s): it is not reused but trained again", run_dir, "; ".join(problems))
    _rewrite_record(run_dir, record, {**record, "finished": False, "damaged": problems}, "mark it unfinished")
    return None
