"""Tatoeba retrieval (notebook 04 §8) on real Tatoeba pairs with a stand-in encoder whose right
and wrong nearest neighbours are set by hand: the accuracy of each direction and language, the
unweighted mean over languages, which direction is which, and the intervals."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xlir_utils.bitext import DIRECTIONS, evaluate_tatoeba, top1_correct
from xlir_utils.data import tatoeba_pairs

# Per language: how many pairs, the English queries that retrieve a wrong sentence (en→xx) and
# the translations that retrieve a wrong English sentence (xx→en).
PLAN = {"de": (6, {0, 2}, set()), "th": (4, set(), {3})}
EXPECTED = {  # accuracy by hand from PLAN: (en→xx, xx→en)
    "de": (4 / 6, 6 / 6),
    "th": (4 / 4, 3 / 4),
}


def _unit(i: int, dim: int, lean: int | None = None) -> np.ndarray:
    """Basis vector i; with ``lean``, tilted towards basis vector ``lean`` (1 : 2), so its nearest
    neighbour among the basis vectors is ``lean`` (cosine 0.89) rather than i (0.45)."""
    v = np.zeros(dim, dtype=np.float32)
    v[i] = 1.0
    if lean is not None:
        v[lean] = 2.0
    return v / np.linalg.norm(v)


@pytest.fixture(scope="module")
def pairs(shared_data) -> dict[str, pd.DataFrame]:
    out = {lang: tatoeba_pairs(lang).head(n).reset_index(drop=True) for lang, (n, _, _) in PLAN.items()}
    english = [t for p in out.values() for t in p.en]
    assert len(set(english)) == len(english)  # each English sentence names one row
    return out


@pytest.fixture(scope="module")
def encoder(pairs):
    """An encode function: pair i of a language is basis vector i on both sides, except that a
    planned wrong side leans towards pair i+1's vector and so finds that pair's sentence first."""
    vectors: dict[tuple[str, str], np.ndarray] = {}
    for lang, (n, wrong_en, wrong_xx) in PLAN.items():
        for i, (en, xx) in enumerate(zip(pairs[lang].en, pairs[lang].xx)):
            vectors[(en, "en")] = _unit(i, n, (i + 1) % n if i in wrong_en else None)
            vectors[(xx, lang)] = _unit(i, n, (i + 1) % n if i in wrong_xx else None)
    calls = []

    def encode(texts, langs, kind):
        calls.append((tuple(sorted(set(langs))), kind))
        return np.stack([vectors[(t, lang)] for t, lang in zip(texts, langs)])

    encode.calls = calls
    return encode


def test_top1_correct_by_hand():
    index = np.eye(3, dtype=np.float32)
    queries = np.stack([_unit(0, 3), _unit(1, 3, lean=2), _unit(2, 3)])
    np.testing.assert_array_equal(top1_correct(queries, index), [True, False, True])
    np.testing.assert_array_equal(top1_correct(index, queries), [True, True, True])  # the other way round


def test_accuracy_directions_and_intervals(pairs, encoder):
    table, values = evaluate_tatoeba(encoder, pairs, bootstrap=300, seed=3)
    assert set(encoder.calls) == {(("en",), "query"), (("de",), "query"), (("th",), "query")}
    assert set(table.dataset) == {"tatoeba"} and set(table.metric) == {"accuracy"}
    assert set(table.setting) == set(DIRECTIONS) == {"en→xx", "xx→en"}
    rows = table.set_index(["setting", "query_lang", "cand_lang"])
    for lang, (n, _, _) in PLAN.items():
        en_xx = rows.loc[("en→xx", "en", lang)]  # XTREME-R's: English queries, the other language's index
        xx_en = rows.loc[("xx→en", lang, "en")]  # MTEB's: the other language's queries, the English index
        assert en_xx.value == pytest.approx(EXPECTED[lang][0]) and xx_en.value == pytest.approx(EXPECTED[lang][1])
        assert en_xx.n_queries == xx_en.n_queries == n
    for d, direction in enumerate(DIRECTIONS):
        overall = rows.loc[(direction, "all", "all")]
        # unweighted mean over languages, not over sentences (de has 6 pairs, th 4)
        assert overall.value == pytest.approx(np.mean([EXPECTED[lang][d] for lang in PLAN]))
        assert overall.n_queries == 10
    assert len(table) == 2 * (1 + len(PLAN))
    assert (table.ci_low <= table.value + 1e-12).all() and (table.value <= table.ci_high + 1e-12).all()
    perfect = rows.loc[("en→xx", "en", "th")]
    assert perfect.ci_low == perfect.ci_high == 1.0  # every resample of all-correct queries is all correct
    imperfect = rows.loc[("en→xx", "en", "de")]
    assert imperfect.ci_low < imperfect.value < imperfect.ci_high
    # per-query values for the seed statistics: one run per direction, the hand-set correctness
    assert [v.dataset for v in values] == [f"tatoeba {d}" for d in DIRECTIONS]
    np.testing.assert_array_equal(values[0].matrices["accuracy"][:, 0], [0, 1, 0, 1, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(values[1].matrices["accuracy"][:, 0], [1, 1, 1, 1, 1, 1, 1, 1, 1, 0])


def test_intervals_are_seeded_and_optional(pairs, encoder):
    a, _ = evaluate_tatoeba(encoder, pairs, bootstrap=200, seed=3)
    b, _ = evaluate_tatoeba(encoder, pairs, bootstrap=200, seed=3)
    pd.testing.assert_frame_equal(a, b)
    none, _ = evaluate_tatoeba(encoder, pairs, bootstrap=0, seed=3)
    assert none.ci_low.isna().all() and none.ci_high.isna().all()
    np.testing.assert_allclose(none.value, a.value)
