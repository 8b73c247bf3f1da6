"""Code-switched training's inputs (notebooks 01 §6, 02 §7): lexicons from parallel text that is
never evaluated, symmetrised and deterministic; a seeded transform that changes only words with
a lexicon entry; the leakage check over the switched pairs. Real NTREX-128, MKQA and MLQA-R text
in the smoke profile."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xlir_utils import config, data
from xlir_utils import code_switching as cs
from xlir_utils.code_switching.alignment import align_intersection, viterbi_links
from xlir_utils.code_switching.words import words
from xlir_utils.data.pairs import LeakageError, normalise_text
from xlir_utils.language_adapters.corpus import evaluation_texts


@pytest.fixture(scope="module")
def smoke(shared_data):
    return config.load("smoke")


@pytest.fixture(scope="module")
def exclude(smoke):
    return evaluation_texts(smoke)


@pytest.fixture(scope="module")
def de_lexicon(smoke, exclude, tmp_path_factory):
    import os

    os.environ["XLIR_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    try:
        return cs.lexicon(smoke, "de", exclude)
    finally:
        del os.environ["XLIR_CACHE_DIR"]


def test_parallel_text_holds_no_evaluation_text(smoke, exclude):
    text = cs.parallel_text(smoke, "es", exclude)
    assert set(text.source) == {"ntrex128", "mkqa", "training questions"}  # es has all three sources
    assert not {normalise_text(t) for t in [*text.en, *text.foreign]} & exclude
    planted = normalise_text(text.en.iat[0])  # a text that is evaluated is dropped with its pair
    fewer = cs.parallel_text(smoke, "es", exclude | {planted})
    assert len(fewer) == len(text) - 1 and planted not in {normalise_text(t) for t in fewer.en}


def test_intersection_keeps_links_both_directions_agree_on():
    source = [["the", "house"], ["the", "book"], ["a", "book"], ["a", "house", "is", "big"]]
    target = [["das", "haus"], ["das", "buch"], ["ein", "buch"], ["ein", "haus", "ist", "groß"]]
    linked = align_intersection(source, target, iterations=10)
    forward, backward = viterbi_links(source, target, 10), viterbi_links(target, source, 10)
    both = {(s[i], t[j]) for s, t, f, b in zip(source, target, forward, backward) for i, j in f & {(i, j) for j, i in b}}
    assert set(linked) == both
    assert {("house", "haus"), ("book", "buch"), ("the", "das")} <= set(linked)
    assert ("house", "buch") not in linked


def test_lexicon_is_deterministic_and_cached(smoke, exclude, de_lexicon, tmp_path, monkeypatch):
    monkeypatch.setenv("XLIR_CACHE_DIR", str(tmp_path))
    again = cs.lexicon(smoke, "de", exclude)  # induced again in an empty cache
    for name in ("english", "foreign", "links"):
        np.testing.assert_array_equal(getattr(again, name), getattr(de_lexicon, name))
    assert (tmp_path / "lexicons" / "smoke" / "de.npz").is_file()
    cached = cs.lexicon(smoke, "de", exclude)
    np.testing.assert_array_equal(cached.foreign, de_lexicon.foreign)
    assert len(de_lexicon) > 500 and (de_lexicon.links >= 2).all()
    top = de_lexicon.translations("from_en")
    assert top["and"] == "und" and top["with"] == "mit"  # the most often linked translation


def test_p_zero_is_the_identity_and_output_is_seeded(de_lexicon):
    translator = cs.Translator({"de": de_lexicon})
    text = "The president said on Saturday that the police and the people will meet in the city."

    def run(seed, p=0.5):
        return cs.code_switch(text, "en", translator, ["en", "de"], p, "bilingual", np.random.default_rng(seed))

    assert run(1, p=0.0) == (text, 0)
    assert run(1) == run(1)
    assert run(1)[0] != text and run(1)[0] != run(2)[0]
    everything, n = run(1, p=1.0)
    assert n == sum(1 for w in words(text, "en") if translator.translate(w, "en", "de"))


def test_only_words_with_a_lexicon_entry_change(de_lexicon):
    translator = cs.Translator({"de": de_lexicon})
    text = "Zorblax and the qwertyuiop of Saturday"
    out, n = cs.code_switch(text, "en", translator, ["de"], 1.0, "multilingual", np.random.default_rng(0))
    new = [translator.translate(w.lower(), "en", "de") for w in text.split()]
    assert new[0] is None and new[3] is None and sum(w is not None for w in new) >= 3
    assert out == " ".join(n_ or w for w, n_ in zip(text.split(), new))  # no entry: the word stays
    assert n == sum(w is not None for w in new)


def test_pivot_and_unspaced_scripts(smoke, exclude, de_lexicon):
    th = cs.lexicon(smoke, "th", exclude)
    translator = cs.Translator({"de": de_lexicon, "th": th})
    english = translator.translate("und", "de", "en")
    assert english == "and" and translator.translate("und", "de", "th") == th.translations("from_en").get("and")
    text = "เขาบอกว่าพรรคและรัฐบาลจะประชุมกันในวันเสาร์"
    out, n = cs.code_switch(text, "th", translator, ["en"], 1.0, "bilingual", np.random.default_rng(0))
    assert n > 0 and " " in out and " " not in text  # an English word inside Thai text stands apart


def test_pairs_switch_x_x_rows_only_on_the_chosen_side(smoke, de_lexicon):
    pairs, _ = data.training_pairs(smoke, data.evaluation_sets(smoke))
    pairs = pairs[pairs.query_lang.isin(["en", "de"]) & pairs.passage_lang.isin(["en", "de"])].reset_index(drop=True)
    translator = cs.Translator({"de": de_lexicon})
    out = cs.code_switch_pairs(pairs, cs.CodeSwitching(0.5, "bilingual", "query"), translator, ["en", "de"], seed=13)
    mono = pairs.query_lang == pairs.passage_lang
    assert (out.passage == pairs.passage).all()  # the passage side is untouched
    assert (out["query"][~mono] == pairs["query"][~mono]).all() and (out.switched_words[~mono] == 0).all()
    assert (out["query"][mono] != pairs["query"][mono]).mean() > 0.5
    shuffled = cs.code_switch_pairs(pairs.iloc[::-1], cs.CodeSwitching(0.5, "bilingual", "query"), translator,
                                    ["en", "de"], seed=13).iloc[::-1]
    pd.testing.assert_frame_equal(shuffled.reset_index(drop=True), out)  # each row's draws are its own
    data.check_training_pairs(smoke, out.drop(columns="switched_words"))  # clean pairs stay clean


def test_leakage_check_runs_on_the_switched_pairs(smoke, de_lexicon, monkeypatch):
    """A switched text that happens to equal an evaluation text stops the run before training."""
    from xlir_utils.code_switching import runs

    pairs, _ = data.training_pairs(smoke, data.evaluation_sets(smoke))
    evaluated = data.retrieval_set(smoke, "xquad-r").queries.text.iat[0]

    def leaky(pairs, *args, **kwargs):
        return pairs.assign(query=[evaluated] + pairs["query"].tolist()[1:], switched_words=0)

    monkeypatch.setattr(runs, "code_switch_pairs", leaky)
    monkeypatch.setattr(runs, "train_full", lambda *a, **k: pytest.fail("trained on leaking pairs"))
    with pytest.raises(LeakageError, match="xquad-r"):
        runs.train_code_switched(smoke, "X-X", pairs, cs.CodeSwitching(0.5), cs.Translator({"de": de_lexicon}), 13)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="not in \\[0, 1\\]"):
        cs.CodeSwitching(1.5)
    with pytest.raises(ValueError, match="mode"):
        cs.CodeSwitching(0.5, "trilingual")
    assert cs.CodeSwitching(0.25, "multilingual", "query").key == "ML-CS p=0.25 query"


def test_the_dev_choice_is_the_best_studied_setting():
    from xlir_utils.code_switching.runs import choose, chosen_setting

    grid = pd.DataFrame([
        {"stage": "reference", "setting": "none (X-X, p = 0)", "mode": None, "p": 0.0, "side": None, "S": 0.70},
        {"stage": "1", "setting": "ML-CS p=0.25 query", "mode": "multilingual", "p": 0.25, "side": "query", "S": 0.61},
        {"stage": "1", "setting": "ML-CS p=0.5 both", "mode": "multilingual", "p": 0.5, "side": "both", "S": 0.64},
        {"stage": "2", "setting": "CS p=0.5 both", "mode": "bilingual", "p": 0.5, "side": "both", "S": 0.63}])
    choice = choose(grid)  # the reference row (no switching) is shown, never chosen
    assert choice["setting"] == "ML-CS p=0.5 both" and choice["S"] == 0.64
    assert chosen_setting(choice) == cs.CodeSwitching(0.5, "multilingual", "both")


def test_code_switched_systems_are_compared_with_hybrid_and_their_own_sampling():
    from xlir_utils.reporting import code_switching_comparisons

    rows = [("e5", "zero-shot", None, None), ("full-X-X", "full", "X-X", 1.0), ("full-hybrid", "full", "hybrid", 0.5),
            ("full-hybrid-a0.25", "full", "hybrid", 0.25), ("cs-X-X", "code-switching", "X-X", 1.0),
            ("cs-hybrid", "code-switching", "hybrid", 0.5)]
    frame = pd.DataFrame(rows, columns=["system", "family", "sampling", "alpha"]).assign(post_hoc=None)
    assert code_switching_comparisons(frame, 0.5) == [("cs-X-X", "full-hybrid"), ("cs-X-X", "full-X-X"),
                                                      ("cs-hybrid", "full-hybrid")]


def test_a_damaged_dev_score_is_computed_again(tmp_path, monkeypatch):
    import json

    from xlir_utils.code_switching import runs

    run = tmp_path / "cs-X-X-bi-p0.25-both-s13"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"digest": "d1", "spec": {"train": {"freeze_layers": 6}}}))
    (run / "dev_scores.json").write_text('{"digest": "d1", "scores": {"S": 0.5')  # truncated
    scored = []
    monkeypatch.setattr("xlir_utils.encoders.registry.load_encoder", lambda *a, **k: type("M", (), {"max_seq_length": 8})())
    monkeypatch.setattr("xlir_utils.recipe_study.dev_scores", lambda *a, **k: scored.append(1) or {"S": 0.6})
    row = runs._dev_row(config.load("smoke"), run, None, {"setting": "x"})
    assert row == {"setting": "x", "S": 0.6} and scored == [1]
    assert json.loads((run / "dev_scores.json").read_text())["scores"] == {"S": 0.6}  # rewritten, then reused
    assert runs._dev_row(config.load("smoke"), run, None, {"setting": "x"}) == row and scored == [1]
