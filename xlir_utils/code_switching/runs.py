"""Code-switched training runs and the development-set choice of their setting (notebook 02 §7).

**The selection rule, fixed before the runs.** Dev score *S* = mean of the monolingual,
cross-lingual and multilingual mAP on ``mlqa-r-dev`` (the recipe study's score), after the
recipe's steps, at the profile's seed. Stage 1: multilingual code-switching (ML-CS, the
variant Litschko et al. found best for multilingual retrieval) of X-X batches, with
p ∈ {0.25, 0.5, 0.75} on the query side, the passage side or both
(``cfg.code_switching_p`` and ``cfg.code_switching_sides``; ``smoke`` tries p = 0.5, both). Stage 2:
bilingual code-switching at stage 1's (p, side). The setting with the highest *S* is trained
at every seed, as *CS* (code-switched X-X batches only) and *CS + hybrid* (hybrid batches
whose X-X batches are code-switched), on the recipe, budget and seeds of X-X / X-Y / hybrid.
XQuAD-R is never looked at. The X-X run of notebook 02 §4 (p = 0) is scored beside them.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import pandas as pd

from .. import paths
from ..data.training_data import check_training_pairs
from ..heap import release_dropped_models
from ..io_utils import atomic_write_json
from ..training.runs import run_name as full_run_name
from ..training.runs import train_full
from .transform import CodeSwitching, Translator, code_switch_pairs

__all__ = ["choose", "stage_1", "chosen_setting", "dev_study", "run_name", "train_code_switched"]

logger = logging.getLogger(__name__)

RULE = ("S = mean of mono, cross and multi mAP on mlqa-r-dev after the recipe's steps, profile seed; stage 1: "
        "ML-CS of X-X batches, p in {0.25, 0.5, 0.75} x side in {query, passage, both}; stage 2: bilingual CS at "
        "stage 1's (p, side); the highest S is trained at every seed as CS and CS + hybrid")
CODE_SWITCHING_SAMPLINGS = ("X-X", "hybrid")


def stage_1(profile) -> list[CodeSwitching]:
    """Stage 1's settings: ML-CS at every p and side of the profile."""
    return [CodeSwitching(p, "multilingual", side) for p in profile.code_switching_p
            for side in profile.code_switching_sides]


def run_name(sampling: str, setting: CodeSwitching, seed: int) -> str:
    """``cs-X-X-ml-p0.5-both-s13``: a code-switched run's folder."""
    mode = "ml" if setting.mode == "multilingual" else "bi"
    return f"cs-{sampling}-{mode}-p{setting.p:g}-{setting.side}-s{seed}"


def train_code_switched(profile, sampling: str, pairs: pd.DataFrame, setting: CodeSwitching, translator: Translator,
                        seed: int, *, show_progress: bool = True) -> dict:
    """Train on ``pairs`` with their X-X rows code-switched (``sampling`` X-X: *CS*; hybrid:
    *CS + hybrid*), as :func:`~xlir_utils.training.train_full` trains X-X and hybrid; reused,
    resumed and locked like every run (notebook 02 §7)."""
    if sampling not in CODE_SWITCHING_SAMPLINGS:
        raise ValueError(f"code-switched training uses X-X or hybrid batches, not {sampling!r}")
    switched = code_switch_pairs(pairs, setting, translator, profile.train_languages, seed)
    check_training_pairs(profile, switched)  # a switched text must not become an evaluation text either
    return train_full(profile, sampling, switched.drop(columns="switched_words"), seed=seed,
                      name=run_name(sampling, setting, seed), extra=f"code-switching={setting.key}",
                      show_progress=show_progress)


def _dev_row(profile, run_dir, dev, label: dict) -> dict:
    """*S* and its parts of a finished run's model on the dev set; stored beside the run, keyed
    by the run's digest, so a rerun does not encode again."""
    from ..encoders.registry import load_encoder  # lazy: torch
    from ..recipe_study import dev_scores

    record = json.loads((run_dir / "run.json").read_text())
    path = run_dir / "dev_scores.json"
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
            if stored.get("digest") == record["digest"]:
                return {**label, **stored["scores"]}
        except (ValueError, AttributeError, KeyError) as exc:  # a damaged file is scored again
            logger.warning("%s is unreadable (%s); the dev set is scored again", path, exc)
    model = load_encoder(str(run_dir / "model"), profile)
    scores = dev_scores(model, dev, profile, max_seq_length=model.max_seq_length,
                        shared_layers=record["spec"]["train"].get("freeze_layers", 0))
    atomic_write_json({"digest": record["digest"], "scores": scores}, path)
    del model
    release_dropped_models()
    return {**label, **scores}


def dev_study(profile, pairs: pd.DataFrame, translator: Translator, dev, *, show_progress: bool = True
              ) -> tuple[pd.DataFrame, dict]:
    """Apply the rule of the module docstring (notebook 02 §7): (every setting's dev scores, the
    choice). Runs are trained (or reused) at the profile's seed; stage 2 follows stage 1's winner."""
    seed = profile.seed
    rows = []
    xx_dir = paths.runs_dir(profile.name) / full_run_name("X-X", None, seed)
    if (xx_dir / "run.json").is_file() and json.loads((xx_dir / "run.json").read_text()).get("finished"):
        rows.append(_dev_row(profile, xx_dir, dev, {"stage": "reference", "setting": "none (X-X, p = 0)",
                                                     "mode": None, "p": 0.0, "side": None}))

    def study(stage: str, settings: Sequence[CodeSwitching]) -> None:
        for setting in settings:
            train_code_switched(profile, "X-X", pairs, setting, translator, seed, show_progress=show_progress)
            rows.append(_dev_row(profile, paths.runs_dir(profile.name) / run_name("X-X", setting, seed), dev,
                                 {"stage": stage, "setting": setting.key, "mode": setting.mode, "p": setting.p,
                                  "side": setting.side}))

    study("1", stage_1(profile))
    first = max((r for r in rows if r["stage"] == "1"), key=lambda r: r["S"])
    study("2", [CodeSwitching(first["p"], "bilingual", first["side"])])
    grid = pd.DataFrame(rows)
    return grid, choose(grid)


def choose(grid: pd.DataFrame) -> dict:
    """The rule (module docstring) on the study's table: the setting with the highest *S*
    (notebook 02 §7)."""
    studied = grid[grid.stage.isin(["1", "2"])]
    best = studied.loc[studied.S.idxmax()]
    return {"rule": RULE, "mode": best["mode"], "p": float(best.p), "side": best.side, "setting": best.setting,
            "S": float(best.S)}


def chosen_setting(choice: dict) -> CodeSwitching:
    """The :class:`CodeSwitching` a choice (``results/code_switching_choice.json``) names
    (notebooks 02 §7, 04 §2)."""
    return CodeSwitching(float(choice["p"]), choice["mode"], choice["side"])
