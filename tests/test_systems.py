"""The systems layer: paired comparisons and run discovery, with a deterministic stand-in
encoder on real XQuAD-R texts (the evaluation embedding store: tests/test_embedding_store.py)."""
from __future__ import annotations

import pandas as pd
import pytest
from helpers import CountingEncoder, stand_in_system as _system

from xlir_utils import config, systems
from xlir_utils.training.spec import make_spec


def test_paired_comparison_against_the_reference(store_project, xquad_article):
    biased = _system("biased", CountingEncoder(offset=3.0), "fp-b")
    plain = _system("plain", CountingEncoder(offset=0.0), "fp-p")
    cfg = config.load("smoke").replace(bootstrap_samples=200)
    _, _, values = systems.evaluate_systems(cfg, [biased, plain], {xquad_article.name: xquad_article})
    rows = systems.paired_against(cfg, values, xquad_article.languages, reference="biased", dataset=xquad_article.name)
    assert set(rows.system) == {"plain"} and set(rows.setting) == {"mono", "cross", "multi"}
    overall = rows[rows.query_lang == "all"].set_index("setting")
    assert (overall.ci_low <= overall.delta).all() and (overall.delta <= overall.ci_high).all()
    assert overall.loc["multi", "value_b"] == pytest.approx(
        _macro_multi_map(biased, xquad_article), abs=1e-12)  # the reference's own multilingual mAP
    with pytest.raises(ValueError, match="no per-query values of 'zero'"):
        systems.paired_against(cfg, values, xquad_article.languages, reference="zero", dataset=xquad_article.name)


def _macro_multi_map(system, xquad_article):
    from xlir_utils.evaluation import evaluate

    q, c = systems.embed_retrieval_set(system, xquad_article, "sentence", "smoke")
    t = evaluate(xquad_article, q, c, bootstrap=0).table
    return t[(t.setting == "multi") & (t.metric == "map") & (t.query_lang == "all")].value.iat[0]


def test_only_runs_of_the_profiles_recipe_and_seeds_are_evaluated(tmp_path, monkeypatch):
    """An earlier protocol's run, or a seed outside ``XLIR_SEEDS``, must not join a system's seeds."""
    import dataclasses
    import json

    from xlir_utils import paths

    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))
    cfg = config.load("smoke").replace(seeds=(13, 14))
    loaded = []
    monkeypatch.setattr("xlir_utils.systems.discovery.load_encoder", lambda path, profile: loaded.append(path))
    monkeypatch.setattr("xlir_utils.systems.discovery.encoder_system", lambda label, spec, load, *a, **k: (label, load))
    old_recipe = dataclasses.asdict(dataclasses.replace(cfg.train, temperature=0.05, steps=60))
    toy = pd.DataFrame({"query": ["q"], "passage": ["p"]})
    recorded = dataclasses.asdict(make_spec("full-hybrid-s13", "m", "hybrid", cfg.train, 13, toy).train)
    assert recorded["precision"] in ("fp32", "bf16-autocast")  # "auto" resolved, as every run records it
    for name, seed, train in [("full-hybrid-s13", 13, recorded),
                              ("full-hybrid-s99", 99, dataclasses.asdict(cfg.train)),
                              ("full-hybrid-s14", 14, old_recipe)]:
        folder = paths.runs_dir("smoke") / name
        folder.mkdir(parents=True)
        spec = {"sampling": "hybrid", "alpha": cfg.train.alpha, "seed": seed, "train": train, "base_model": "m"}
        (folder / "run.json").write_text(json.dumps({"finished": True, "spec": spec}))
    legacy = paths.runs_dir("smoke") / "full-X-X-s14"  # recorded before "auto" was resolved: retrained, not evaluated
    legacy.mkdir(parents=True)
    spec = {"sampling": "X-X", "alpha": 1.0, "seed": 14, "train": dataclasses.asdict(cfg.train), "base_model": "m"}
    (legacy / "run.json").write_text(json.dumps({"finished": True, "spec": spec}))
    found = systems.full_run_systems(cfg)
    assert [label for label, _ in found] == ["full-hybrid-s13"]
    assert loaded == []  # discovery loads no model: each is loaded when its system is first used
    found[0][1]()
    assert [p.rsplit("/", 2)[-2] for p in loaded] == ["full-hybrid-s13"]


def test_code_switched_systems_are_the_runs_of_the_chosen_setting(tmp_path, monkeypatch):
    """Notebook 04 evaluates the dev-chosen code-switching setting only, never a full run twice,
    and no code-switched system before notebook 02 §7 has chosen one."""
    import dataclasses
    import json

    from xlir_utils import outputs, paths
    from xlir_utils.code_switching import CodeSwitching
    from xlir_utils.code_switching.runs import run_name

    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))
    cfg = config.load("smoke").replace(seeds=(13, 14))
    monkeypatch.setattr("xlir_utils.systems.discovery.encoder_system",
                        lambda label, spec, load, *a, **k: (label, spec, k.get("name")))
    assert systems.code_switching_systems(cfg) == []  # nothing chosen yet
    recorded = dataclasses.asdict(make_spec("x", "m", "X-X", cfg.train, 13, pd.DataFrame({"query": ["q"]})).train)
    chosen, other = CodeSwitching(0.5, "multilingual", "both"), CodeSwitching(0.25, "multilingual", "query")
    for sampling, setting, seed in [("X-X", chosen, 13), ("X-X", chosen, 14), ("hybrid", chosen, 13),
                                    ("X-X", other, 13), ("X-X", chosen, 99)]:
        folder = paths.runs_dir("smoke") / run_name(sampling, setting, seed)
        folder.mkdir(parents=True)
        spec = {"sampling": sampling, "alpha": 1.0 if sampling == "X-X" else 0.5, "seed": seed, "train": recorded,
                "base_model": "m"}
        (folder / "run.json").write_text(json.dumps({"finished": True, "spec": spec}))
    outputs.save_json({"mode": "multilingual", "p": 0.5, "side": "both", "setting": chosen.key, "S": 0.6},
                      outputs.CODE_SWITCHING_CHOICE_FILE, "smoke")
    found = systems.code_switching_systems(cfg)
    assert [(label, name) for label, _, name in found] == [
        ("cs-X-X-ml-p0.5-both-s13", "cs-X-X"), ("cs-X-X-ml-p0.5-both-s14", "cs-X-X"),
        ("cs-hybrid-ml-p0.5-both-s13", "cs-hybrid")]
    assert {(s.family, s.sampling, s.alpha) for _, s, _ in found} == {("code-switching", "X-X", 1.0),
                                                                     ("code-switching", "hybrid", 0.5)}
    assert systems.full_run_systems(cfg) == []  # a code-switched run is not a full fine-tuning run
