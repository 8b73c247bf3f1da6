"""The systems layer: the evaluation embedding store (keys, damage, unwritable cache) and
paired comparisons, with a deterministic stand-in encoder on real XQuAD-R texts."""
from __future__ import annotations

import logging
import zlib

import numpy as np
import pytest

from xlir_utils import config, systems
from xlir_utils.data import load_retrieval_set


class CountingEncoder:
    """Embeds a text as a fixed random vector of its own (seeded by its content), plus an offset
    per language: a biased 'model' whose calls are counted."""

    def __init__(self, offset: float = 0.0):
        self.calls = 0
        self.offset = offset

    def __call__(self, texts, langs, kind):
        self.calls += 1
        out = np.empty((len(texts), 16), np.float32)
        for i, (text, lang) in enumerate(zip(texts, langs)):
            v = np.random.default_rng(zlib.crc32(f"{kind}:{text}".encode())).standard_normal(16)
            v[zlib.crc32(lang.encode()) % 16] += self.offset
            out[i] = v / np.linalg.norm(v)
        return out


@pytest.fixture(scope="module")
def rset(shared_data):
    return load_retrieval_set("xquad-r", articles=1)


@pytest.fixture()
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("XLIR_ROOT", str(tmp_path / "proj"))
    monkeypatch.setenv("XLIR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def _system(label="sys", encoder=None, fingerprint="fp-1"):
    return systems.System(label, "zero-shot", "m", fingerprint, encoder or CountingEncoder())


def test_store_is_reused_and_keyed_by_fingerprint_and_texts(project, rset):
    s = _system()
    q, c = systems.embed_retrieval_set(s, rset, "sentence", "smoke")
    assert s.encode.calls == 2 and q.shape == (len(rset.queries), 16) and c.shape[0] == len(rset.candidates)
    q2, c2 = systems.embed_retrieval_set(s, rset, "sentence", "smoke")
    assert s.encode.calls == 2 and np.array_equal(q, q2) and np.array_equal(c, c2)
    other = _system(encoder=s.encode, fingerprint="fp-2")  # another model under the same label
    systems.embed_retrieval_set(other, rset, "sentence", "smoke")
    assert s.encode.calls == 4
    systems.embed_retrieval_set(other, rset, "sentence+context", "smoke")  # other candidate texts
    assert s.encode.calls == 6


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_store_is_rebuilt_with_a_warning(project, rset, caplog, damage):
    """A truncated npz used to crash notebooks 04 and 05 with zipfile.BadZipFile on every rerun."""
    s = _system()
    q, c = systems.embed_retrieval_set(s, rset, "sentence", "smoke")
    path = systems.embeddings_path("smoke", s.label, rset.name)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 3], "garbage": b"\x00" * 500, "empty": b""}[damage])
    with caplog.at_level(logging.WARNING):
        q2, c2 = systems.embed_retrieval_set(s, rset, "sentence", "smoke")
    assert "unreadable" in caplog.text and s.encode.calls == 4
    assert np.array_equal(q, q2) and np.array_equal(c, c2)
    assert systems.load_embeddings(path, systems._store_key(s, rset, "sentence")) is not None  # replaced
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_unwritable_store_keeps_the_embeddings(tmp_path, monkeypatch, rset, caplog):
    monkeypatch.setenv("XLIR_ROOT", str(tmp_path / "proj"))
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("XLIR_CACHE_DIR", str(blocker))
    s = _system()
    with caplog.at_level(logging.WARNING):
        q, c = systems.embed_retrieval_set(s, rset, "sentence", "smoke")
    assert q.shape[0] == len(rset.queries) and "could not store" in caplog.text


def test_paired_comparison_against_the_reference(project, rset):
    biased = _system("biased", CountingEncoder(offset=3.0), "fp-b")
    plain = _system("plain", CountingEncoder(offset=0.0), "fp-p")
    cfg = config.load("smoke").replace(bootstrap_samples=200)
    rows = systems.paired_against(cfg, [biased, plain], {rset.name: rset}, reference="biased", dataset=rset.name)
    assert set(rows.system) == {"plain"} and set(rows.setting) == {"mono", "cross", "multi"}
    overall = rows[rows.query_lang == "all"].set_index("setting")
    assert (overall.ci_low <= overall.delta).all() and (overall.delta <= overall.ci_high).all()
    assert overall.loc["multi", "value_b"] == pytest.approx(
        _macro_multi_map(biased, rset), abs=1e-12)  # the reference's own multilingual mAP


def _macro_multi_map(system, rset):
    from xlir_utils.evaluation import evaluate

    q, c = systems.embed_retrieval_set(system, rset, "sentence", "smoke")
    t = evaluate(rset, q, c, bootstrap=0).table
    return t[(t.setting == "multi") & (t.metric == "map") & (t.query_lang == "all")].value.iat[0]


def test_only_runs_of_the_profiles_recipe_and_seeds_are_evaluated(tmp_path, monkeypatch):
    """An earlier protocol's run, or a seed outside ``XLIR_SEEDS``, must not join a system's seeds."""
    import dataclasses
    import json

    from xlir_utils import paths

    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))
    cfg = config.load("smoke")
    loaded = []
    monkeypatch.setattr("xlir_utils.encoders.registry.load_encoder", lambda path, profile: loaded.append(path))
    monkeypatch.setattr(systems, "encoder_system", lambda label, *a, **k: label)
    old_recipe = dataclasses.asdict(dataclasses.replace(cfg.train, temperature=0.05, steps=60))
    for name, seed, train in [("full-hybrid-s13", cfg.seeds[0], dataclasses.asdict(cfg.train)),
                              ("full-hybrid-s99", 99, dataclasses.asdict(cfg.train)),
                              ("full-hybrid", cfg.seeds[0], old_recipe)]:
        folder = paths.runs_dir("smoke") / name
        folder.mkdir(parents=True)
        spec = {"sampling": "hybrid", "alpha": cfg.train.alpha, "seed": seed, "train": train, "base_model": "m"}
        (folder / "run.json").write_text(json.dumps({"finished": True, "spec": spec}))
    assert systems.full_run_systems(cfg) == ["full-hybrid-s13"]
    assert [p.rsplit("/", 2)[-2] for p in loaded] == ["full-hybrid-s13"]
