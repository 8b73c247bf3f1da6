"""The adapters' learning rate, chosen on the development set (notebook 03 §4).

Every rate of ``adapters.lr_grid`` is tried with one seed (the profile's first) for the task
adapter (variant ``task-only``) and for the joint language adapters (``joint-per-side``, whose
task and language adapters share one rate). Each run is scored as the recipe study scores full
fine-tuning: *S*, the mean of monolingual, cross-lingual and multilingual mAP on ``mlqa-r-dev``
(:func:`xlir_utils.recipe_study.scores_of`); XQuAD-R is never looked at. The task adapter's best
rate is then the rate of every variant that trains a task adapter above frozen or no language
adapters (``task-only``, ``mlm-per-side``, ``english``), the joint one that of the variants that
train language-adapter-sized weights with the retrieval loss (``joint-per-side`` and its
parameter-matched ``shared-control``; :func:`chosen_rates`).

The grid's runs live in ``runs/<profile>/adapter-lr-grid/`` with their dev scores, and resume
like every run. A grid run at the chosen rate and the grid's seed is the same recipe as that
variant's run at that seed, so notebook 03 §5 copies it instead of training it again (notebook 04
evaluates the copy, never the grid's folder).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..config import Profile
from ..data import retrieval_set
from ..encoders.encode import ENCODING_SCHEME, resolve_precision
from ..io_utils import atomic_write_json, json_digest
from ..recipe_study import scores_of
from .routing import encode_routed
from .variants import grid_run_dir, load_variant, train_variant, variant_lr

RATE_FIELDS = {"task-only": "task_lr", "joint-per-side": "joint_lr"}  # grid variant -> the AdapterConfig rate it chooses
GRID_VARIANTS = tuple(RATE_FIELDS)
DEV_SET = "mlqa-r-dev"
SCORES = "dev_scores.json"
GRID_COLUMNS = ["variant", "lr", "seed", "train_minutes", "loss_last10", "dev_mono", "dev_cross", "dev_multi",
                "dev_rank_distance", "S"]


def _grid_profile(profile: Profile, variant: str, lr: float) -> Profile:
    return profile.replace(adapters={RATE_FIELDS[variant]: lr})


def dev_score(run_dir: Path, digest: str, profile: Profile, dev) -> dict[str, float]:
    """*S* and its parts for the finished variant run ``run_dir`` (recipe ``digest``) on the dev
    set, routed as notebook 04 routes it; kept beside the run (``dev_scores.json``, keyed by the
    run, the dev texts and how they are encoded)."""
    path = run_dir / SCORES
    key = json_digest({"run": digest, "dev": dev.name, "queries": dev.queries.text.tolist(),
                       "candidates": dev.candidate_texts(profile.candidate_text),
                       "batch_tokens": profile.encode_batch_tokens, "scheme": ENCODING_SCHEME,
                       "precision": resolve_precision("auto")})
    try:
        saved = json.loads(path.read_text())
        if isinstance(saved, dict) and saved.get("key") == key and isinstance(saved.get("scores"), dict):
            return saved["scores"]
    except (OSError, ValueError):
        pass  # missing or unreadable: scored again
    model, routing, manifest = load_variant(run_dir, profile=profile)
    kw = dict(cache=False, show_progress=False, batch_tokens=profile.encode_batch_tokens,
              shared_layers=manifest.get("freeze_layers", 0))
    q = encode_routed(model, dev.queries.text.tolist(), dev.queries.lang.tolist(), "query", routing, **kw)
    c = encode_routed(model, dev.candidate_texts(profile.candidate_text), dev.candidates.lang.tolist(), "passage",
                      routing, **kw)
    scores = scores_of(dev, q, c)
    atomic_write_json({"key": key, "run": digest, "scores": scores}, path)
    return scores


def lr_grid(profile: Profile, pairs: pd.DataFrame, *, languages: Sequence[str] | None = None,
            show_progress: bool = True) -> pd.DataFrame:
    """Train (or reuse) every run of the grid and score it on ``mlqa-r-dev`` (notebook 03 §4).

    Returns one row per (variant, rate): seed, minutes, final loss, ``dev_mono``, ``dev_cross``,
    ``dev_multi``, ``dev_rank_distance`` and ``S``. An empty grid (``adapters.lr_grid == ()``) gives
    an empty table.
    """
    seed = profile.seeds[0]
    dev = retrieval_set(profile, DEV_SET) if profile.adapters.lr_grid else None
    rows = []
    for variant in GRID_VARIANTS:
        for lr in profile.adapters.lr_grid:
            run_dir = grid_run_dir(profile.name, variant, lr, seed)
            grid_profile = _grid_profile(profile, variant, lr)
            record = train_variant(grid_profile, variant, pairs, seed=seed, run_dir=run_dir, languages=languages,
                                   show_progress=show_progress)
            rows.append({"variant": variant, "lr": variant_lr(grid_profile, variant), "seed": seed,
                         "train_minutes": record["train_seconds"] / 60,
                         "loss_last10": record["final_loss_mean_last10"],
                         **dev_score(run_dir, record["digest"], profile, dev)})
    return pd.DataFrame(rows, columns=GRID_COLUMNS)


def chosen_rates(grid: pd.DataFrame) -> dict[str, float]:
    """The rate with the highest dev *S* per grid variant, as ``AdapterConfig`` fields:
    ``{"task_lr": .., "joint_lr": ..}`` (notebook 03 §4); ``{}`` for an empty grid."""
    out = {}
    for variant, field in RATE_FIELDS.items():
        rows = grid[grid.variant == variant]
        if len(rows):
            out[field] = float(rows.loc[rows.S.idxmax(), "lr"])
    return out
