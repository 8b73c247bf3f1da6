"""What determines a training run (notebook 02 §4): its :class:`RunSpec`, whose digest keys the
run folder's reuse, and the record of a finished run with that digest.

The training loop (:mod:`.loop`) checks and writes records; the entry points (:mod:`.runs`,
the adapter variants, the recipe study) build specs.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from ..config import SAMPLINGS, TrainConfig
from ..io_utils import json_digest, recover_dir
from ..sampling import sampling_alpha

__all__ = ["SAMPLINGS", "RunSpec", "finished_record", "make_spec", "pairs_digest"]


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


def make_spec(name: str, base_model: str, sampling: str, cfg: TrainConfig, seed: int,
              pairs: pd.DataFrame, alpha: float | None = None, extra: str = "") -> RunSpec:
    """The :class:`RunSpec` of one run (``alpha`` for hybrid defaults to the profile's)."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"Unknown sampling {sampling!r}; choose one of {SAMPLINGS}.")
    a = sampling_alpha(sampling, cfg.alpha if alpha is None else alpha)
    return RunSpec(name, base_model, sampling, a, seed, cfg, len(pairs), pairs_digest(pairs), extra)


def finished_record(run_dir: Path, digest: str) -> dict | None:
    """The record of a finished run with this recipe digest, else None (a model folder swap
    that a kill interrupted is finished or undone first)."""
    recover_dir(run_dir / "model")
    try:
        record = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("digest") == digest and record.get("finished") else None
