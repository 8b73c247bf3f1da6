"""Profiles and paths: one switch, frozen configs, paths independent of the working directory."""
import dataclasses
import subprocess
import sys

import pytest

from xlir_utils import config, paths


def test_profiles_resolve_and_are_frozen(monkeypatch):
    monkeypatch.delenv("XLIR_PROFILE", raising=False)
    assert config.load().name == "quick"
    monkeypatch.setenv("XLIR_PROFILE", "smoke")
    cfg = config.load()
    assert cfg.name == "smoke" and cfg.encoder == "e5-small-offline"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1
    paper = config.load("paper")
    assert paper.train.batch_size == 100 and paper.train.lr == 3e-5 and paper.train.weight_decay == 0.01
    assert paper.train.alpha == 0.5 and "xlm-roberta-base" in paper.baselines
    assert paper.train.alpha_sweep == (0.0, 0.25, 0.5, 0.75, 1.0)
    # the paper's public training data and languages; el, th, tr and vi are never trained on
    assert paper.train_dataset == "mmarco" and set(paper.train_languages) == {"en", "ar", "zh", "de", "es", "ru", "hi"}
    assert set(paper.eval_datasets) == {"xquad-r", "mlqa-r"}


def test_unknown_profile_names_the_choices(monkeypatch):
    monkeypatch.setenv("XLIR_PROFILE", "fast")
    with pytest.raises(ValueError, match="'fast'.*smoke, quick, paper"):
        config.load()


def test_replace_keeps_the_rest():
    cfg = config.load("smoke")
    other = cfg.replace(train={"steps": 99})
    assert other.train.steps == 99 and other.train.batch_size == cfg.train.batch_size
    assert cfg.train.steps != 99


def test_paths_do_not_depend_on_the_working_directory(tmp_path):
    code = "from xlir_utils import paths; print(paths.project_root())"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(paths.project_root())
    assert (paths.project_root() / "pyproject.toml").is_file()
    assert paths.results_dir("quick") == paths.project_root() / "results"
    assert paths.results_dir("smoke") == paths.project_root() / "results" / "smoke"


def test_cache_dir_is_configurable(monkeypatch, tmp_path):
    monkeypatch.setenv("XLIR_CACHE_DIR", str(tmp_path / "c"))
    assert paths.cache_dir() == tmp_path / "c"


def test_seeds_and_their_override(monkeypatch):
    monkeypatch.delenv("XLIR_SEEDS", raising=False)
    assert config.load("quick").seeds == (13, 14, 15)
    monkeypatch.setenv("XLIR_SEEDS", "13")
    assert config.load("quick").seeds == (13,)  # the documented single-seed path
    for bad in ("a", "13,13", "-1", ","):
        monkeypatch.setenv("XLIR_SEEDS", bad)
        with pytest.raises(ValueError, match="XLIR_SEEDS"):
            config.load("quick")
