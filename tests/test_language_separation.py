"""How far apart the languages sit (notebook 05 §8): translation cosine and centroid distance."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from xlir_utils import language_separation as sep


def _unit(rows) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _rset():
    """Two questions, each answered in en, de and th (rows 0-2 and 3-5); a third answered twice in en."""
    candidates = pd.DataFrame({"lang": ["en", "de", "th", "en", "de", "th", "en", "en"]})
    queries = pd.DataFrame({"question_id": ["a", "a", "b", "c"]})
    relevant = [np.array([0, 1, 2]), np.array([0, 1, 2]), np.array([3, 4, 5]), np.array([6, 7])]
    return SimpleNamespace(name="toy", candidates=candidates, queries=queries, relevant=relevant)


def test_parallel_groups_are_one_answer_per_language_per_question():
    groups = sep.parallel_groups(_rset())
    assert [g.tolist() for g in groups] == [[0, 1, 2], [3, 4, 5]]  # question c: two en answers, not translations


def test_translation_cosine_is_the_mean_over_pairs_of_different_languages():
    emb = _unit(np.random.default_rng(0).normal(size=(8, 5)))
    groups = sep.parallel_groups(_rset())
    expected = np.mean([emb[i] @ emb[j] for g in groups for i in g for j in g if i != j])
    assert sep.translation_cosine(emb, groups) == pytest.approx(expected, abs=1e-12)
    same = _unit(np.repeat(np.eye(5)[:2], [3, 5], axis=0))  # every translation identical
    assert sep.translation_cosine(same, groups) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no parallel answers"):
        sep.translation_cosine(emb, [])


def test_centroid_distance_grows_when_languages_move_apart():
    langs = ["en", "de", "th", "en", "de", "th"]
    mixed = _unit(np.tile(np.eye(2), (3, 1)))  # en, de and th each hold the same two points
    assert sep.centroid_distance(mixed, langs) == pytest.approx(0.0, abs=1e-12)
    apart = _unit(np.vstack([np.eye(3), np.eye(3)]))  # en, de, th each at its own axis
    assert sep.centroid_distance(apart, langs) == pytest.approx(np.sqrt(2))
    with pytest.raises(ValueError, match="two or more languages"):
        sep.centroid_distance(mixed, ["en"] * 6)


def test_the_summary_gives_each_systems_seed_mean_and_range():
    table = pd.DataFrame({"model": ["h-s13", "h-s14", "z"], "system": ["h", "h", "z"], "seed": [13, 14, None],
                          "translation_cosine": [0.6, 0.8, 0.5], "centroid_distance": [0.2, 0.4, 0.3]})
    out = sep.separation_summary(table).set_index("system")
    assert out.loc["h", "seeds"] == 2 and out.loc["h", "translation_cosine"] == pytest.approx(0.7)
    assert (out.loc["h", "translation_cosine_min"], out.loc["h", "translation_cosine_max"]) == (0.6, 0.8)
    assert out.loc["z", "centroid_distance"] == 0.3
