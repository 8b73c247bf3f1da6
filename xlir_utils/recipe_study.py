"""The recipe study: a small grid for the quick profile, chosen on the development set only
(``make recipe-study``; its table is shown in notebook 02 §1 and committed in ``results/``).

**The selection rule, fixed before the grid was run.**

* Dev score *S* = mean of the monolingual, cross-lingual and multilingual full-ranking mAP on
  ``mlqa-r-dev`` (macro means, as the paper's tables), encoded as the final evaluation encodes.
  XQuAD-R is never looked at.
* Every run evaluates *S* at :data:`EVAL_STEPS`. The schedule is warm-up then constant, so the
  model after step *s* is exactly an *s*-step run: choosing the step is early stopping.
* Stage A, for X-X, X-Y and hybrid alike, at batch 32, max length 128, embeddings and lowest 6
  layers frozen, bf16 autocast, coarse to fine: first the learning rate at τ = 0.01
  (:data:`STAGE_A_LR`), then the temperature at that learning rate (:data:`STAGE_A_TEMPERATURE`).
  The recipe is the (τ, lr, step) with the highest *S* averaged over the three samplings: one
  recipe, one budget for all three, as in the paper.
* Stage B, at stage A's (τ, lr), one change at a time (:data:`STAGE_B`), steps re-chosen the same
  way: a change that costs more time per step (batch 64) is adopted only if it raises the mean *S*
  by at least :data:`GAIN`; a cheaper one (8 frozen layers) if it lowers it by at most
  :data:`TOLERANCE`.
* Pruned for time, before the runs concerned and without looking at them: the full 3 x 3
  (τ, lr) grid became the two 1-D sweeps above after the nine τ = 0.01 runs (one run costs
  about 8 minutes on 2 cores), and stage B lost "no frozen layers" (three times the step cost,
  unaffordable for the quick profile's seeds x systems anyway) and "max length 64".
* One seed (the profile's); the chosen recipe is then trained with three seeds (notebook 02 §4).

**Stage F**, added after the choice and outside the rule (a look, not a choice; the recipe stays
as chosen): hybrid at stage A's (τ, lr) with 0, 6 and 8 frozen layers (:data:`FREEZING_CHECK`),
each scored like the grid, all three on one machine and precision, so that what freezing costs
on dev is measured rather than assumed (``python -m xlir_utils.recipe_study --stages F``).

Runs live in ``runs/<profile>/recipe-study/`` (no model is saved: only the dev curve) and resume
after an interruption. Output: ``results/recipe_grid.csv`` (every run at every evaluated step)
and ``results/recipe_choice.json`` (the rule, the stages' winners, the chosen recipe).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import config, outputs, paths
from .config import SAMPLINGS
from .data import evaluation_sets, retrieval_set, training_pairs
from .heap import release_dropped_models
from .io_utils import atomic_write_csv

EVAL_STEPS = (25, 50, 75, 100, 150, 200)
STAGE_A_LR = {"temperature": 0.01, "lr": (1e-5, 3e-5, 1e-4)}
STAGE_A_TEMPERATURE = (0.01, 0.02, 0.05)
STAGE_A_BASE = {"batch_size": 32, "max_seq_length": 128, "freeze_layers": 6}
STAGE_B = ({"batch_size": 64}, {"freeze_layers": 8})
COSTLIER = ({"batch_size": 64},)  # changes of STAGE_B that cost more time per step
FREEZING_CHECK = (0, 6, 8)  # frozen layers of stage F (hybrid, stage A's τ and lr)
GAIN, TOLERANCE = 0.005, 0.002
GRID_FILE, CHOICE_FILE = outputs.RECIPE_GRID_FILE, outputs.RECIPE_CHOICE_FILE


def dev_scores(model, dev, profile, *, max_seq_length: int, shared_layers: int = 0) -> dict[str, float]:
    """Mono, cross and multi mAP, rank distance and *S* of ``model`` on the dev set (notebook 02 §1)."""
    # lazy (here and in study_run): encoding, evaluation and training need torch, which reading the
    # study's table (notebook 02, `make figures`) must not load
    from .encoders import encode

    kw = dict(cache=False, show_progress=False, max_seq_length=max_seq_length, batch_tokens=profile.encode_batch_tokens,
              shared_layers=shared_layers)
    q = encode(model, dev.queries.text.tolist(), "query", **kw)
    c = encode(model, dev.candidate_texts(profile.candidate_text), "passage", **kw)
    return scores_of(dev, q, c)


def scores_of(dev, query_emb, cand_emb) -> dict[str, float]:
    """Mono, cross and multi mAP, rank distance and *S* from the dev set's embeddings (notebooks 02 §1, 03 §4)."""
    from .evaluation import evaluate

    t = evaluate(dev, query_emb, cand_emb, bootstrap=0).table
    t = t[t.query_lang == "all"]
    get = {(s, m): v for s, m, v in zip(t.setting, t.metric, t.value)}
    out = {f"dev_{s}": get[(s, "map")] for s in ("mono", "cross", "multi")}
    out["dev_rank_distance"] = get[("multi", "rank_distance")]
    out["S"] = float(np.mean([out["dev_mono"], out["dev_cross"], out["dev_multi"]]))
    return out


def _run_id(sampling: str, train) -> str:
    return (f"{sampling}-t{train.temperature:g}-lr{train.lr:g}-b{train.batch_size}"
            f"-l{train.max_seq_length}-f{train.freeze_layers}")


def study_run(profile, sampling: str, train, pairs, dev, *, stage: str, show_progress: bool = True) -> pd.DataFrame:
    """Train one grid point to the last evaluated step, scoring the dev set at every step of
    :data:`EVAL_STEPS`; returns (and stores) its dev curve. Resumes and reuses like any run."""
    from .encoders.registry import load_encoder  # lazy: see dev_scores
    from .training import finished_record, make_spec, set_trainable, train_run

    run_dir = paths.runs_dir(profile.name) / "recipe-study" / _run_id(sampling, train)
    curve_path = run_dir / "dev_curve.csv"
    spec = make_spec(run_dir.name, profile.encoder, sampling, train, profile.seed, pairs, extra="recipe-study")
    if finished_record(run_dir, spec.digest()) is not None and curve_path.is_file():
        return pd.read_csv(curve_path)
    rows = pd.read_csv(curve_path).to_dict("records") if curve_path.is_file() else []
    model = load_encoder(profile.encoder, profile)
    base_length = model.max_seq_length
    model.max_seq_length = train.max_seq_length
    set_trainable(model, train.freeze_word_embeddings, train.freeze_layers)
    meta = {"stage": stage, "sampling": sampling, **{k: getattr(train, k) for k in
            ("temperature", "lr", "batch_size", "max_seq_length", "freeze_layers")}}

    def on_step(done, m):
        if done in EVAL_STEPS:
            scores = dev_scores(m, dev, profile, max_seq_length=base_length, shared_layers=train.freeze_layers)
            # rows at or after this step belong to an earlier trajectory (a restart from scratch
            # after a recipe change clears them all; a resume keeps the steps before its checkpoint)
            rows[:] = [r for r in rows if r["step"] < done] + [{**meta, "step": done, **scores}]
            atomic_write_csv(pd.DataFrame(rows).sort_values("step"), curve_path)
            m.train()

    record = train_run(model, pairs, spec, run_dir, on_step=on_step, save_fn=lambda m, folder: None,
                       show_progress=show_progress)
    del model
    release_dropped_models()
    curve = pd.read_csv(curve_path)
    curve["seconds_per_step"] = record["train_seconds"] / record["steps"]
    atomic_write_csv(curve, curve_path)
    return curve


def _train_config(base, changes: dict):
    return dataclasses.replace(base, steps=max(EVAL_STEPS), checkpoint_every=EVAL_STEPS[0], schedule="constant",
                               **changes)


def best_step(curves: pd.DataFrame) -> tuple[int, float]:
    """The evaluated step with the highest *S* averaged over the samplings, and that mean."""
    mean_s = curves.groupby("step").S.mean()
    return int(mean_s.idxmax()), float(mean_s.max())


def choose(grid: pd.DataFrame, *, stage_b: bool = True) -> dict:
    """Apply the selection rule (module docstring) to the study's table (stage A alone when not
    ``stage_b``)."""
    a = grid[grid.stage == "A"]
    per_point = []
    for (tau, lr), g in a.groupby(["temperature", "lr"]):
        if g.sampling.nunique() == len(SAMPLINGS):
            step, s = best_step(g)
            per_point.append({"temperature": tau, "lr": lr, "steps": step, "S": s})
    if not per_point:
        raise ValueError("stage A is incomplete: run `make recipe-study` first")
    stage_a = max(per_point, key=lambda r: r["S"])
    chosen = {**STAGE_A_BASE, **{k: stage_a[k] for k in ("temperature", "lr", "steps")}}
    decisions = []
    for change in STAGE_B if stage_b else ():
        (key, value), = change.items()
        g = grid[(grid.stage == "B") & (grid[key] == value) & (grid.temperature == stage_a["temperature"])
                 & (grid.lr == stage_a["lr"])]
        if g.sampling.nunique() < len(SAMPLINGS):
            decisions.append({"change": change, "adopted": False, "why": "not run"})
            continue
        step, s = best_step(g)
        delta = s - stage_a["S"]
        adopt = delta >= GAIN if change in COSTLIER else delta >= -TOLERANCE
        decisions.append({"change": change, "S": s, "steps": step, "delta_S": delta, "adopted": bool(adopt)})
    adopted = [d for d in decisions if d["adopted"]]
    if adopted:  # at most one change was tested at a time: keep the best adopted one
        best = max(adopted, key=lambda d: d["S"])
        chosen.update(best["change"])
        chosen["steps"] = best["steps"]
    rule = __doc__.split("**The selection rule, fixed before the grid was run.**")[1].split("**Stage F**")[0]
    return {"rule": rule.split("Runs live")[0].strip(), "stage_a": per_point, "stage_a_best": stage_a,
            "stage_b": decisions, "chosen": chosen}


def run_study(profile=None, *, stages: str = "AB", show_progress: bool = True) -> dict:
    """Run (or resume) the study and write its table and choice (``make recipe-study``)."""
    profile = profile or config.load("quick")
    pairs, _ = training_pairs(profile, evaluation_sets(profile))
    dev = retrieval_set(profile, profile.train_dataset + "-dev")
    prior = None if "A" in stages else read_grid(profile.name)  # stage B or F alone: stage A from its table
    curves = [] if prior is None else [prior[~prior.stage.isin(list(stages))]]

    def run(train, sampling, stage):  # the table so far is written after every run: nothing is lost
        curve = study_run(profile, sampling, train, pairs, dev, stage=stage, show_progress=show_progress)
        curves.append(curve.assign(stage=stage))  # (stage F's 6-layer run may be stage A's own, reused)
        outputs.save_table(pd.concat(curves, ignore_index=True), GRID_FILE, profile.name)

    if "A" in stages:
        def stage_a(tau, lr):
            train = _train_config(profile.train, {"temperature": tau, "lr": lr, **STAGE_A_BASE})
            for sampling in SAMPLINGS:
                run(train, sampling, "A")

        for lr in STAGE_A_LR["lr"]:
            stage_a(STAGE_A_LR["temperature"], lr)
        best_lr = choose(pd.concat(curves, ignore_index=True), stage_b=False)["stage_a_best"]["lr"]
        for tau in STAGE_A_TEMPERATURE:
            if tau != STAGE_A_LR["temperature"]:
                stage_a(tau, best_lr)
    grid = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    if "B" in stages:
        if grid.empty:
            raise ValueError("stage B needs stage A's table: run `make recipe-study` (stages AB) first")
        best = choose(grid)["stage_a_best"]
        for change in STAGE_B:
            for sampling in SAMPLINGS:
                train = _train_config(profile.train, {"temperature": best["temperature"], "lr": best["lr"],
                                                      **STAGE_A_BASE, **change})
                run(train, sampling, "B")
        grid = pd.concat(curves, ignore_index=True)
    if "F" in stages:
        if grid.empty:
            raise ValueError("stage F needs stage A's table: run `make recipe-study` (stages AB) first")
        best = choose(grid)["stage_a_best"]
        for frozen in FREEZING_CHECK:
            train = _train_config(profile.train, {"temperature": best["temperature"], "lr": best["lr"],
                                                  **STAGE_A_BASE, "freeze_layers": frozen})
            run(train, "hybrid", "F")
        grid = pd.concat(curves, ignore_index=True)
    choice = choose(grid)
    outputs.save_json(choice, CHOICE_FILE, profile.name)
    return choice


def stage_a_table(grid: pd.DataFrame) -> pd.DataFrame:
    """Stage A at a glance (notebook 02 §4): the mean dev score *S* over the three samplings at
    its best step, per temperature (rows) and learning rate (columns), and that step; only
    points run for every sampling (an unfinished study shows the finished ones)."""
    rows = []
    for (tau, lr), g in grid[grid.stage == "A"].groupby(["temperature", "lr"]):
        if g.sampling.nunique() < len(SAMPLINGS):
            continue
        step, s = best_step(g)
        rows.append({"temperature": tau, "lr": lr, "S": s, "step": step})
    t = pd.DataFrame(rows, columns=["temperature", "lr", "S", "step"])
    return t.pivot(index="temperature", columns="lr", values="S").join(
        t.pivot(index="temperature", columns="lr", values="step").add_prefix("step at lr="))


def temperature_gap(grid: pd.DataFrame, chosen: dict) -> pd.DataFrame:
    """Hybrid − X-X on dev per temperature τ, at the chosen learning rate and step (notebook 02
    §4): mono, cross and multi mAP, *S* and rank distance, from stage A's table."""
    a = grid[(grid.stage == "A") & (grid.lr == chosen["lr"]) & (grid.step == chosen["steps"])]
    columns = {"dev_mono": "mono", "dev_cross": "cross", "dev_multi": "multi", "S": "S",
               "dev_rank_distance": "rank distance"}
    wide = a.pivot_table(index="temperature", columns="sampling", values=list(columns))
    gap = pd.DataFrame({name: wide[(col, "hybrid")] - wide[(col, "X-X")] for col, name in columns.items()})
    gap.index.name = "temperature"
    return gap


def freezing_table(grid: pd.DataFrame, steps: int) -> pd.DataFrame:
    """Stage F at a glance (notebook 02 §4): per number of frozen layers, hybrid's dev *S* (and
    mono, cross, multi) at the recipe's ``steps``, its best *S* over the evaluated steps and at
    which step, and the seconds per training step on the machine that ran it."""
    rows = []
    for frozen, g in grid[(grid.stage == "F") & (grid.sampling == "hybrid")].groupby("freeze_layers"):
        at = g[g.step == steps]
        best = g.loc[g.S.idxmax()]
        rows.append({"frozen layers": int(frozen), f"S at {steps} steps": at.S.iat[0] if len(at) else np.nan,
                     **{f"{k} at {steps}": at[f"dev_{k}"].iat[0] if len(at) else np.nan
                        for k in ("mono", "cross", "multi")},
                     "best S": best.S, "best step": int(best.step),
                     "seconds per step": g.seconds_per_step.iat[0] if "seconds_per_step" in g else np.nan})
    return pd.DataFrame(rows).set_index("frozen layers") if rows else pd.DataFrame()


def read_grid(profile_name: str = "quick") -> pd.DataFrame | None:
    """The committed study table, verified (None if it was never run; notebook 02 §4)."""
    path: Path = outputs.table_path(GRID_FILE, profile_name)
    return outputs.read_table(GRID_FILE, profile_name) if path.is_file() else None


def read_choice(profile_name: str = "quick") -> dict | None:
    """The committed choice of the study, verified (None if it was never run; notebook 02 §4)."""
    path: Path = outputs.table_path(CHOICE_FILE, profile_name)
    return outputs.read_json(CHOICE_FILE, profile_name) if path.is_file() else None


def main(argv: list[str] | None = None) -> None:
    """``python -m xlir_utils.recipe_study`` (``make recipe-study``; notebook 02 §4 shows its table)."""
    parser = argparse.ArgumentParser(prog="python -m xlir_utils.recipe_study",
                                     description="The quick profile's recipe study on mlqa-r-dev.")
    parser.add_argument("--stages", default="AB", choices=("A", "B", "AB", "F"),
                        help="A, B or AB (default); F: the freezing check (0, 6, 8 frozen layers, hybrid)")
    args = parser.parse_args(argv)
    choice = run_study(stages=args.stages)
    print(json.dumps(choice["chosen"], indent=2))


if __name__ == "__main__":
    import sys

    from .cli import run

    sys.exit(run(main))
