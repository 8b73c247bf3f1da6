"""Training runs of notebook 02: their names, reuse across an α sweep, and the entry point
:func:`train_full`.

A run is named by its sampling, its α for a sweep point and its seed: ``full-X-X-s13``,
``full-hybrid-a0.25-s14``. Hybrid batches at α 1, 0 or the profile's α *are* the X-X, X-Y and
hybrid runs (same batches, same seed), so an α sweep reuses them (:func:`canonical_sampling`).
What determines a run (its spec and digest) is :mod:`.spec`.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .. import paths
from ..config import Profile
from ..encoders.registry import load_encoder
from ..file_digests import digest_problems
from ..heap import release_dropped_models
from ..io_utils import atomic_replace_dir
from ..sampling import sampling_alpha
from .distributed import main_first
from .loop import train_run
from .spec import FILES_KEY, finished_record, make_spec, run_lock
from .step import set_trainable

logger = logging.getLogger(__name__)


def run_name(sampling: str, alpha: float | None = None, seed: int | None = None) -> str:
    """Folder name of a full fine-tuning run: ``full-X-X``, ``full-hybrid-a0.25`` (a sweep point),
    with ``-s<seed>`` when a seed is given (notebook 02 §4)."""
    name = f"full-{sampling}" + ("" if alpha is None else f"-a{alpha:g}")
    return name if seed is None else f"{name}-s{seed}"


def canonical_sampling(sampling: str, alpha: float | None, default_alpha: float) -> tuple[str, float | None]:
    """The run a (sampling, alpha) request is: hybrid at alpha 1, 0 or the profile's alpha *is*
    the X-X, X-Y or hybrid run (same batches, same seed), so a sweep point reuses it (notebook 02 §4)."""
    if sampling != "hybrid" or alpha is None:
        return sampling, alpha
    a = sampling_alpha("hybrid", alpha)
    if a == 1.0:
        return "X-X", None
    if a == 0.0:
        return "X-Y", None
    if a == float(default_alpha):
        return "hybrid", None
    return sampling, a


def finished_runs(runs_root: Path) -> list[Path]:
    """Run folders holding a finished model, sorted by name (notebooks 02-04). A run whose saved
    files are missing or of another size than its record says is left out with a warning
    (:func:`train_full` checks every SHA-256 and trains it again)."""
    out = []
    for p in sorted(runs_root.glob("*")):
        if not (p / "run.json").is_file():
            continue
        try:
            record = json.loads((p / "run.json").read_text())
        except ValueError as exc:
            logger.warning("left out run folder %s: its run.json is unreadable (%s); train it again", p, exc)
            continue
        if not record.get("finished"):
            continue
        if problems := digest_problems(p, record.get(FILES_KEY, {}), full=False):
            logger.warning("left out run folder %s: it is damaged (%s); train it again (notebook 02 §4)",
                           p, "; ".join(problems))
            continue
        out.append(p)
    return out


def read_train_logs(run_dirs: Sequence[Path]) -> pd.DataFrame:
    """The ``train_log.csv`` of several runs in one table, with a ``run`` column (the folder name).

    Notebooks 02 §4 and 03 §4 store it in ``results/`` so that ``make figures`` redraws the loss curves.
    """
    return pd.concat([pd.read_csv(d / "train_log.csv").assign(run=d.name) for d in run_dirs], ignore_index=True)


def train_full(profile: Profile, sampling: str, pairs: pd.DataFrame, *, alpha: float | None = None,
               seed: int | None = None, runs_root: Path | None = None, show_progress: bool = True,
               stop_after: int | None = None, name: str | None = None, extra: str = "") -> dict:
    """Full fine-tuning of the profile's base encoder with one sampling strategy and seed
    (notebook 02 §4-5; ``seed`` defaults to the profile's).

    Reuses a finished run with the same recipe whose saved files are intact; resumes an
    interrupted one and trains a damaged one again; raises
    :class:`~xlir_utils.errors.BusyError` while another process trains it. A hybrid ``alpha`` of
    1, 0 or the profile's alpha is the X-X, X-Y or hybrid run itself (:func:`canonical_sampling`).
    The saved model keeps the base encoder's maximum length: training truncates at
    ``train.max_seq_length``, evaluation encodes like the zero-shot model. ``stop_after``
    interrupts the run after that many steps (a simulated crash; the next call resumes). ``name``
    and ``extra`` (added to the spec) are for runs on transformed pairs, such as code-switched
    training (notebook 02 §7).
    """
    seed = profile.seed if seed is None else int(seed)
    sampling, alpha = canonical_sampling(sampling, alpha, profile.train.alpha)
    name = name or run_name(sampling, alpha, seed)
    run_dir = (runs_root or paths.runs_dir(profile.name)) / name
    spec = make_spec(name, profile.encoder, sampling, profile.train, seed, pairs, alpha,
                     extra="format=2" + (f"|{extra}" if extra else ""))
    if (record := main_first(lambda: finished_record(run_dir, spec.digest()))) is not None:
        return record  # skip loading the model (rank 0 first repairs an interrupted model-folder swap)
    with run_lock(run_dir, f"run {name}"):  # a second process stops here, before loading the model
        model = load_encoder(profile.encoder, profile)
        base_length = model.max_seq_length
        model.max_seq_length = profile.train.max_seq_length
        set_trainable(model, profile.train.freeze_word_embeddings, profile.train.freeze_layers)

        def save(m, folder):
            m.max_seq_length = base_length
            atomic_replace_dir(folder, lambda tmp: m.save(str(tmp)))

        try:
            return train_run(model, pairs, spec, run_dir, save_fn=save, show_progress=show_progress,
                             stop_after=stop_after)
        finally:
            del model  # it refers to itself (its model card): only the cyclic collector frees it
            release_dropped_models()


def run_summary(records: Sequence[dict]) -> pd.DataFrame:
    """One row per finished run: system, seed, sampling, alpha, budget, realised X-X share, minutes,
    final loss (notebook 02 §4; ``results/train_runs.csv``)."""
    rows = []
    for r in records:
        spec = r["spec"]
        sampling, alpha = canonical_sampling(spec["sampling"], spec["alpha"] if spec["sampling"] == "hybrid" else None,
                                             spec["train"]["alpha"])
        rows.append({"run": spec["name"], "system": run_name(sampling, alpha), "seed": spec["seed"],
                     "sampling": spec["sampling"], "alpha": spec["alpha"], "steps": r["steps"],
                     "batch": spec["train"]["batch_size"], "precision": r.get("precision", "fp32"),
                     "mono_share": r["mono_share"], "train_minutes": r["train_seconds"] / 60,
                     "loss_last10": r["final_loss_mean_last10"]})
    return pd.DataFrame(rows)
