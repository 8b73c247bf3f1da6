"""Erasers fitted on held-out text (notebook 05 §5): LEACE removes every linear trace of the
language (checked against the ``concept-erasure`` package itself), and the fit text is a seeded
NTREX-128 sample that holds no evaluation text."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from concept_erasure import LeaceFitter
from helpers import CountingEncoder
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from xlir_utils import config, erasure
from xlir_utils.language_adapters.corpus import evaluation_texts
from xlir_utils.systems import System, SystemSpec


def _embeddings(n_per_lang: int = 300, dim: int = 24, langs=("de", "th", "zh"), seed: int = 0):
    """Unit vectors whose language is linearly predictable: a shared content part plus a language offset
    and a language-specific scale on a few axes (what a biased encoder looks like)."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for i, lang in enumerate(langs):
        x = rng.standard_normal((n_per_lang, dim))
        x += 1.5 * rng.standard_normal(dim)  # the language's offset
        x[:, i] *= 2.0  # and its own spread on one axis
        rows.append(x)
        labels += [lang] * n_per_lang
    emb = np.vstack(rows)
    return (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32), np.array(labels)


def _linear_accuracy(emb, langs) -> float:
    return float(cross_val_score(LogisticRegression(max_iter=2000), emb, langs, cv=5).mean())


def test_leace_makes_the_language_linearly_unpredictable():
    emb, langs = _embeddings()
    before = _linear_accuracy(emb, langs)
    erased = erasure.apply_leace(erasure.fit_leace(emb, langs), emb)
    after = _linear_accuracy(erased, langs)
    assert before > 0.95
    assert after < 1 / 3 + 0.1, (before, after)  # three languages: chance is 1/3
    assert np.allclose(np.linalg.norm(erased, axis=1), 1, atol=1e-5)


def test_leace_is_the_package_eraser_then_normalised():
    emb, langs = _embeddings(n_per_lang=80, dim=12, seed=1)
    names = np.unique(langs)
    z = torch.from_numpy((langs[:, None] == names).astype(np.float64))
    package = LeaceFitter.fit(torch.from_numpy(emb.astype(np.float64)), z).eraser(
        torch.from_numpy(emb.astype(np.float64))).numpy()
    package /= np.linalg.norm(package, axis=1, keepdims=True)
    ours = erasure.apply_leace(erasure.fit_leace(emb, langs), emb)
    assert np.allclose(ours, package, atol=1e-6)
    # the eraser fitted on one set applies to any other vectors (no language label needed)
    other, _ = _embeddings(n_per_lang=10, dim=12, seed=2)
    assert erasure.apply_leace(erasure.fit_leace(emb, langs), other).shape == other.shape


def test_leace_needs_two_languages():
    emb, _ = _embeddings(n_per_lang=20, dim=8)
    with pytest.raises(ValueError, match="at least two languages"):
        erasure.fit_leace(emb, ["de"] * len(emb))


def test_fit_texts_are_a_seeded_ntrex_sample_without_evaluation_text(shared_data):
    cfg = config.load("smoke")
    exclude = evaluation_texts(cfg)
    langs = ("en", "de", "th")
    fit = erasure.fit_texts(langs, 25, seed=13, exclude=exclude)
    assert fit.groupby("lang").size().to_dict() == {lang: 25 for lang in langs}
    assert fit.equals(erasure.fit_texts(langs, 25, seed=13, exclude=exclude))  # deterministic
    assert not fit.equals(erasure.fit_texts(langs, 25, seed=14, exclude=exclude))
    from xlir_utils.data import monolingual_text
    from xlir_utils.data.pairs import normalise_text
    assert set(fit[fit.lang == "de"].text) <= set(monolingual_text("de"))
    assert not {normalise_text(t) for t in fit.text} & exclude
    # an excluded sentence is never drawn
    first = fit.text.iat[0]
    again = erasure.fit_texts(langs, 25, seed=13, exclude=exclude | {normalise_text(first)})
    assert first not in set(again.text)


def test_fit_text_embeddings_are_stored_per_model(tmp_path, monkeypatch):
    monkeypatch.setenv("XLIR_CACHE_DIR", str(tmp_path / "cache"))
    import pandas as pd
    fit = pd.DataFrame({"text": ["a b", "c d", "e f", "g h"], "lang": ["de", "de", "th", "th"]})
    enc = CountingEncoder(offset=2.0)
    system = System("s", SystemSpec("zero-shot", "m"), "fp-1", enc)
    emb, langs = erasure.embed_fit_texts(system, fit, "smoke")
    assert emb.shape == (8, 16) and list(langs) == ["de", "de", "th", "th"] * 2 and enc.calls == 2
    again, _ = erasure.embed_fit_texts(system, fit, "smoke")
    assert enc.calls == 2 and np.array_equal(emb, again)  # from the store
    other = System("s", SystemSpec("zero-shot", "m"), "fp-2", enc)  # another model: encoded again
    erasure.embed_fit_texts(other, fit, "smoke")
    assert enc.calls == 4
