"""The recipe study: the selection rule on a synthetic grid, one smoke-sized grid point (a tiny
encoder on the real data), and the quick profile's recipe being the committed choice."""
from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from xlir_utils import config, recipe_study as rs


def _grid(scores: dict, stage: str = "A", **fixed) -> pd.DataFrame:
    """scores: (temperature, lr) -> {step: S}, the same for every sampling."""
    rows = []
    for (tau, lr), curve in scores.items():
        for sampling in rs.SAMPLINGS:
            for step, s in curve.items():
                rows.append({"stage": stage, "sampling": sampling, "temperature": tau, "lr": lr,
                             **rs.STAGE_A_BASE, **fixed, "step": step, "S": s})
    return pd.DataFrame(rows)


def test_stage_a_picks_the_best_mean_score_and_its_step():
    grid = _grid({(0.05, 3e-5): {25: 0.60, 50: 0.62}, (0.01, 1e-5): {25: 0.61, 50: 0.63, 75: 0.625}})
    choice = rs.choose(grid)
    assert choice["chosen"]["temperature"] == 0.01 and choice["chosen"]["lr"] == 1e-5
    assert choice["chosen"]["steps"] == 50 and choice["stage_a_best"]["S"] == pytest.approx(0.63)
    assert "fixed before the grid was run" not in choice["rule"] and "Dev score" in choice["rule"]


def test_stage_b_adopts_only_a_clear_gain_or_a_harmless_saving():
    a = _grid({(0.01, 1e-5): {25: 0.600, 50: 0.620}})
    bigger = _grid({(0.01, 1e-5): {50: 0.623}}, stage="B", batch_size=64)  # +0.003 < GAIN: not worth it
    frozen = _grid({(0.01, 1e-5): {50: 0.6185}}, stage="B", freeze_layers=8)  # -0.0015: within TOLERANCE
    choice = rs.choose(pd.concat([a, bigger, frozen]))
    adopted = [(d["change"], d["adopted"]) for d in choice["stage_b"]]
    assert adopted == [({"batch_size": 64}, False), ({"freeze_layers": 8}, True)]
    assert choice["chosen"]["freeze_layers"] == 8 and choice["chosen"]["steps"] == 50
    # a clear gain from the costlier change wins over the saving; its own best step comes with it
    bigger = _grid({(0.01, 1e-5): {25: 0.630}}, stage="B", batch_size=64)
    choice = rs.choose(pd.concat([a, bigger, frozen]))
    assert choice["chosen"]["batch_size"] == 64 and choice["chosen"]["freeze_layers"] == 6
    assert choice["chosen"]["steps"] == 25
    # a saving that costs too much is refused; a change never run is reported as such
    choice = rs.choose(pd.concat([a, _grid({(0.01, 1e-5): {50: 0.615}}, stage="B", freeze_layers=8)]))
    assert [(d["adopted"], d.get("why")) for d in choice["stage_b"]] == [(False, "not run"), (False, None)]


def test_the_freezing_check_trains_hybrid_at_each_depth_and_keeps_the_grid(tmp_path, monkeypatch):
    """Stage F alone: hybrid at stage A's (τ, lr) with 0, 6 and 8 frozen layers; stage A's rows
    stay in the table and the choice does not move."""
    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))
    cfg = config.load("smoke")
    a = _grid({(0.02, 3e-5): {50: 0.61, 100: 0.62}, (0.01, 1e-5): {50: 0.60, 100: 0.605}})
    from xlir_utils import outputs

    outputs.save_table(a, rs.GRID_FILE, cfg.name)
    before = rs.choose(a)["chosen"]
    ran = []

    def fake_run(profile, sampling, train, pairs, dev, *, stage, show_progress=True):
        ran.append((sampling, train.temperature, train.lr, train.freeze_layers, train.batch_size))
        s = {0: 0.63, 6: 0.62, 8: 0.60}[train.freeze_layers]
        return pd.DataFrame([{"stage": "A", "sampling": sampling, "temperature": train.temperature, "lr": train.lr,
                              "batch_size": train.batch_size, "max_seq_length": train.max_seq_length,
                              "freeze_layers": train.freeze_layers, "step": step, "S": s + step / 1e4,
                              "dev_mono": s, "dev_cross": s, "dev_multi": s,
                              "seconds_per_step": 1 + train.freeze_layers}
                             for step in (50, 100)])

    monkeypatch.setattr(rs, "study_run", fake_run)
    monkeypatch.setattr(rs, "training_pairs", lambda profile, sets: (None, None))
    monkeypatch.setattr(rs, "evaluation_sets", lambda profile: [])
    monkeypatch.setattr(rs, "retrieval_set", lambda profile, name: None)
    choice = rs.run_study(cfg, stages="F", show_progress=False)
    assert ran == [("hybrid", 0.02, 3e-5, k, 32) for k in rs.FREEZING_CHECK]
    grid = rs.read_grid(cfg.name)
    assert len(grid[grid.stage == "A"]) == len(a) and set(grid[grid.stage == "F"].freeze_layers) == {0, 6, 8}
    assert choice["chosen"] == before
    table = rs.freezing_table(grid, 100)
    assert table.index.tolist() == [0, 6, 8]
    assert table["S at 100 steps"].round(4).tolist() == [0.64, 0.63, 0.61]
    assert table["best step"].tolist() == [100, 100, 100] and table["seconds per step"].tolist() == [1, 7, 9]


def test_incomplete_stage_a_is_refused():
    grid = _grid({(0.01, 1e-5): {25: 0.6}})
    with pytest.raises(ValueError, match="incomplete"):
        rs.choose(grid[grid.sampling != "X-Y"])


@pytest.mark.slow
def test_a_grid_point_scores_dev_and_is_reused(tmp_path, monkeypatch, shared_data, tiny_encoder_dir):
    """On the real smoke data; the tiny encoder stands in for e5 (the scores' values do not matter here)."""
    encoder = str(tiny_encoder_dir())
    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))
    from xlir_utils.data import evaluation_sets, retrieval_set, training_pairs

    cfg = config.load("smoke").replace(encoder=encoder)
    pairs, _ = training_pairs(cfg, evaluation_sets(cfg))
    dev = retrieval_set(cfg, "mlqa-r-dev")
    monkeypatch.setattr(rs, "EVAL_STEPS", (1, 2))
    train = rs._train_config(cfg.train, {"temperature": 0.05, "lr": 1e-4, "batch_size": 8, "max_seq_length": 32,
                                         "freeze_layers": 6})
    curve = rs.study_run(cfg, "hybrid", train, pairs, dev, stage="A", show_progress=False)
    assert curve.step.tolist() == [1, 2] and curve.S.between(0, 1).all()
    assert (curve.S == curve[["dev_mono", "dev_cross", "dev_multi"]].mean(axis=1)).all()
    monkeypatch.setattr("xlir_utils.encoders.registry.load_encoder", lambda *a, **k: pytest.fail("retrained"))
    again = rs.study_run(cfg, "hybrid", train, pairs, dev, stage="A", show_progress=False)
    pd.testing.assert_frame_equal(again, curve)


def test_the_quick_recipe_is_the_studys_choice():
    choice = rs.read_choice("quick")
    if choice is None:
        pytest.skip("the recipe study has not been run (make recipe-study)")
    train = config.load("quick").train
    chosen = choice["chosen"]
    assert {k: getattr(train, k) for k in chosen if k != "steps"} == {k: v for k, v in chosen.items() if k != "steps"}
    assert train.steps == chosen["steps"] and train.schedule == "constant"
    assert dataclasses.asdict(train)["precision"] == "auto"
