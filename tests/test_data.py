"""The data layer on the real LAReQA files: counts, relevance, edge cases, bad input."""
from __future__ import annotations

import importlib
import json
import shutil
from collections import Counter

import numpy as np
import pytest
from conftest import isolated_project

from xlir_utils import config, paths
from xlir_utils.data import (
    REGISTRY, ChecksumMismatch, DataError, DataUnavailable, LeakageError, build_pairs,
    check_languages, check_no_leakage, fetch, load_retrieval_set, monolingual_text,
    read_processed,
)
from xlir_utils.data.lareqa import _sentence_of


@pytest.fixture(scope="module")
def xquad(shared_data):
    return load_retrieval_set("xquad-r")


@pytest.fixture(scope="module")
def mlqa(shared_data):
    return load_retrieval_set("mlqa-r")


def test_xquad_r_counts_match_lareqa(xquad):
    assert len(xquad.queries) == 13090
    assert len(xquad.candidates) == 13014
    assert (xquad.queries.groupby("lang").size() == 1190).all()
    assert {len(r) for r in xquad.relevant} == {11}
    assert xquad.candidates.candidate_id.is_unique and xquad.queries.query_id.is_unique


def test_mlqa_r_counts_match_lareqa(mlqa):
    assert len(mlqa.queries) == 4199
    assert len(mlqa.candidates) == 20534
    assert mlqa.queries.question_id.nunique() == 1148
    assert Counter(len(r) for r in mlqa.relevant) == Counter({4: 3280, 3: 789, 2: 130})
    per_id = mlqa.queries.groupby("question_id").lang.agg(set)
    assert per_id.map(lambda s: "en" in s).all()  # every MLQA-R id has English


def test_relevant_sentences_hold_the_answer(xquad, shared_data):
    """Hand-checked: the first English question of XQuAD-R and its answer sentence."""
    q = xquad.queries.set_index("query_id").loc["en:56beb4343aeaaa14008c925b"]
    assert q.text == "How many points did the Panthers defense surrender?"
    i = xquad.queries.index[xquad.queries.query_id == "en:56beb4343aeaaa14008c925b"][0]
    rel = xquad.candidates.iloc[xquad.relevant[i]]
    assert sorted(rel.lang) == sorted(config.XQUAD_R_LANGS)
    en = rel[rel.lang == "en"].iloc[0]
    assert en.sentence.startswith("The Panthers defense gave up just 308 points")
    # Every language's relevant sentence contains its own answer text.
    for lang in config.XQUAD_R_LANGS:
        data = json.loads((shared_data / f"lareqa/xquad-r/{lang}.json").read_text())
        qa = data["data"][0]["paragraphs"][0]["qas"][0]
        sentence = rel[rel.lang == lang].iloc[0].sentence
        assert qa["answers"][0]["text"] in sentence, lang


def test_all_relevant_share_question_id(mlqa):
    cand_lang = mlqa.candidates.lang.to_numpy()
    for i in range(0, len(mlqa.queries), 97):
        qid = mlqa.queries.question_id.iat[i]
        langs = set(mlqa.queries.lang[mlqa.queries.question_id == qid])
        assert set(cand_lang[mlqa.relevant[i]]) == langs


def test_sentence_is_span_not_sentences_field(xquad):
    """tr article 9 paragraph 3: `sentences` and `sentence_breaks` disagree by one character."""
    c = xquad.candidates
    row = c[(c.lang == "tr") & (c.article == 9) & (c.paragraph == 3) & (c.sentence_index == 3)].iloc[0]
    assert row.sentence.startswith(". İki turistik")


def test_several_questions_share_a_sentence(xquad):
    en = [tuple(r) for r, lang in zip(xquad.relevant, xquad.queries.lang) if lang == "en"]
    shared = [k for k, v in Counter(en).items() if v > 1]
    assert len(shared) > 0  # real XQuAD-R has answer sentences serving several questions


def test_answer_start_on_whitespace_maps_to_next_sentence():
    breaks = [[0, 10], [11, 20], [22, 30]]
    assert _sentence_of(breaks, 5) == 0
    assert _sentence_of(breaks, 10) == 1  # the space between spans 0 and 1
    assert _sentence_of(breaks, 21) == 2
    assert _sentence_of(breaks, 29) == 2
    assert _sentence_of(breaks, 30) is None


def test_article_subset_is_parallel(shared_data):
    small = load_retrieval_set("xquad-r", articles=1)
    assert small.queries.groupby("lang").size().nunique() == 1
    assert {len(r) for r in small.relevant} == {11}
    assert set(small.candidates.article) == {0}


def test_the_first_questions_keep_their_relevance_and_the_whole_pool(tmp_path, monkeypatch, shared_data):
    """Smoke evaluates the first ``eval_questions`` questions of its article in every language,
    against every candidate; the leakage check still sees every question."""
    from xlir_utils.data import evaluation_sets, retrieval_set

    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))
    cfg = config.load("smoke")
    whole = load_retrieval_set("xquad-r", articles=cfg.eval_articles)
    first = retrieval_set(cfg, "xquad-r")
    kept = list(dict.fromkeys(whole.queries.question_id))[: cfg.eval_questions]
    assert 0 < cfg.eval_questions < whole.queries.question_id.nunique()
    assert list(dict.fromkeys(first.queries.question_id)) == kept
    assert first.queries.groupby("lang").size().to_dict() == {lang: len(kept) for lang in whole.languages}
    assert first.candidates.equals(whole.candidates)
    rows = {(q, lang): i for i, (q, lang) in enumerate(zip(whole.queries.question_id, whole.queries.lang))}
    for i, (q, lang) in enumerate(zip(first.queries.question_id, first.queries.lang)):
        assert np.array_equal(first.relevant[i], whole.relevant[rows[q, lang]])
    assert first.first_questions(None) is first and whole.first_questions(10_000) is whole
    guarded = {r.name: r for r in evaluation_sets(cfg)}
    assert guarded["xquad-r"].queries.equals(whole.queries)
    assert len(retrieval_set(config.load("quick"), "xquad-r").queries) == 11 * 1190  # quick keeps them all


def test_training_pairs_and_leakage(mlqa, xquad):
    pairs = build_pairs(mlqa)
    mono = pairs[pairs.query_lang == pairs.passage_lang]
    assert len(mono) == 4199
    assert len(pairs) == sum(len(r) for r in mlqa.relevant)
    assert check_no_leakage(pairs, [xquad])["shared"] == 0
    with pytest.raises(LeakageError, match="question id"):
        check_no_leakage(build_pairs(xquad).head(50), [xquad])


def test_unknown_language_names_the_code():
    with pytest.raises(ValueError, match="'xx'.*xquad-r"):
        check_languages("xquad-r", ["en", "xx"])
    with pytest.raises(ValueError, match="'el'"):
        load_retrieval_set("mlqa-r", languages=["el"])


def test_checksum_mismatch_names_the_file(tmp_path, monkeypatch, shared_data):
    offline = tmp_path / "offline"
    (offline / "lareqa/xquad-r").mkdir(parents=True)
    good = shared_data / "lareqa/xquad-r/de.json"
    bad = offline / "lareqa/xquad-r/de.json"
    bad.write_bytes(good.read_bytes()[:-100])  # truncated copy
    isolated_project(tmp_path, monkeypatch, offline)
    with pytest.raises(ChecksumMismatch, match=r"de\.json.*expected"):
        fetch("lareqa/xquad-r/de.json")
    assert not (paths.raw_dir() / "lareqa/xquad-r/de.json").exists()


def test_missing_file_offline_says_what_to_do(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    isolated_project(tmp_path, monkeypatch, tmp_path / "empty")
    with pytest.raises(DataUnavailable, match="XLIR_DATA_DIR"):
        fetch("lareqa/mlqa-r/vi.json")
    assert not any((tmp_path / "proj").rglob("*.json"))


def test_good_file_is_not_replaced_by_bad(tmp_path, monkeypatch, shared_data):
    """A verified file in data/raw wins; a corrupt offline copy is never copied over it."""
    isolated_project(tmp_path, monkeypatch, tmp_path / "offline")
    target = paths.raw_dir() / "lareqa/xquad-r/en.json"
    target.parent.mkdir(parents=True)
    shutil.copy(shared_data / "lareqa/xquad-r/en.json", target)
    (tmp_path / "offline/lareqa/xquad-r").mkdir(parents=True)
    (tmp_path / "offline/lareqa/xquad-r/en.json").write_text("{}")
    assert fetch("lareqa/xquad-r/en.json") == target
    assert fetch("lareqa/xquad-r/en.json").read_bytes() == (shared_data / "lareqa/xquad-r/en.json").read_bytes()


def test_invalid_json_is_a_clear_error(tmp_path, monkeypatch):
    """A file that passes no checksum never gets parsed; one that is valid bytes but bad JSON is named."""
    from xlir_utils.data.lareqa import _read_json

    broken = tmp_path / "zh.json"
    broken.write_text('{"data": [ {"title": "x", ')
    with pytest.raises(DataError, match=r"zh\.json is not valid JSON.*fetch it again"):
        _read_json(broken)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="SQuAD format"):
        _read_json(tmp_path / "list.json")


def test_registry_covers_every_offline_file(shared_data):
    from xlir_utils.data.tatoeba_files import TATOEBA_XQUAD_R, TATOEBA_XTREME_R

    offline_tatoeba = {TATOEBA_XTREME_R[lang][0] for lang in TATOEBA_XQUAD_R}
    for rel, entry in REGISTRY.items():
        assert entry.url.startswith("https://") and len(entry.sha256) == 64, rel
        if entry.dataset != "tatoeba" or rel.split(".")[1].split("-")[0] in offline_tatoeba:
            assert (shared_data / rel).is_file(), rel  # the shared directory holds it
    assert sum(1 for r in REGISTRY.values() if r.dataset == "xquad-r") == 11
    assert sum(1 for r in REGISTRY.values() if r.dataset == "tatoeba") == 2 * len(TATOEBA_XTREME_R) == 82
    assert all("354d67d1cd066854cdfbf5ad0e6105528976141d" in r.url for r in REGISTRY.values() if r.dataset == "mlqa-r")


def test_processed_tables_round_trip(tmp_path, monkeypatch, shared_data):
    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))
    first = read_processed("xquad-r", "smoke", articles=2)
    assert (paths.processed_dir("smoke") / "xquad-r/manifest.json").is_file()
    second = read_processed("xquad-r", "smoke", articles=2)
    assert first.queries.equals(second.queries)
    assert all(np.array_equal(a, b) for a, b in zip(first.relevant, second.relevant))
    third = read_processed("xquad-r", "smoke", articles=1)  # a different request rebuilds
    assert len(third.queries) < len(first.queries)


def test_monolingual_text_for_adapters(shared_data):
    el = monolingual_text("el")
    assert len(el) == len(set(el)) >= 1990  # NTREX-128 only: Tatoeba is an evaluation set
    assert len(monolingual_text("en", sources=("ntrex128",))) >= 1990
    with pytest.raises(ValueError, match="Unknown text source"):
        monolingual_text("en", sources=("wiki",))


@pytest.mark.parametrize("damage", ["truncate", "delete", "manifest"])
def test_damaged_processed_tables_are_rebuilt(tmp_path, monkeypatch, shared_data, caplog, damage):
    """A damaged Parquet file used to give a raw ArrowInvalid on every rerun."""
    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))
    first = read_processed("xquad-r", "smoke", articles=1)
    folder = paths.processed_dir("smoke") / "xquad-r"
    if damage == "truncate":
        data = (folder / "candidates.parquet").read_bytes()
        (folder / "candidates.parquet").write_bytes(data[: len(data) // 2])
    elif damage == "delete":
        (folder / "qrels.parquet").unlink()
    else:
        (folder / "manifest.json").write_text("{not json")
    with caplog.at_level("WARNING"):
        again = read_processed("xquad-r", "smoke", articles=1)
    assert again.candidates.equals(first.candidates)
    assert all(np.array_equal(a, b) for a, b in zip(first.relevant, again.relevant))
    if damage != "manifest":
        assert "damaged" in caplog.text
    assert sorted(p.name for p in folder.parent.iterdir()) == ["xquad-r"]


def test_an_interrupted_rebuild_leaves_the_previous_set(tmp_path, monkeypatch, shared_data):
    """Tables used to be rewritten one by one under the old manifest: a kill left a mix (bare KeyError)."""
    from xlir_utils.data import processed

    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))
    one = read_processed("xquad-r", "smoke", articles=1)
    calls = []
    real = processed.atomic_write_parquet

    def dies_on_the_third_table(df, path):
        calls.append(path.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(df, path)

    monkeypatch.setattr(processed, "atomic_write_parquet", dies_on_the_third_table)
    with pytest.raises(KeyboardInterrupt):
        read_processed("xquad-r", "smoke", articles=2)  # another request: a rebuild, killed half-way
    monkeypatch.undo()
    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))
    folder = paths.processed_dir("smoke")
    assert sorted(p.name for p in folder.iterdir()) == ["xquad-r"]
    kept = read_processed("xquad-r", "smoke", articles=1)  # the previous complete set, intact
    assert kept.queries.equals(one.queries)
    two = read_processed("xquad-r", "smoke", articles=2)  # and a plain rerun of the request works
    assert len(two.queries) > len(one.queries)


def test_xlir_data_dir_that_is_not_a_folder_says_so(tmp_path, monkeypatch):
    isolated_project(tmp_path, monkeypatch, tmp_path / "no-such-folder")
    with pytest.raises(DataUnavailable, match=r"XLIR_DATA_DIR is set to .*no-such-folder.*not a folder"):
        fetch("lareqa/xquad-r/en.json")


def test_empty_xlir_data_dir_counts_as_unset(monkeypatch):
    monkeypatch.setenv("XLIR_DATA_DIR", "")
    assert paths.offline_data_dir() is None


def test_language_arguments_are_codes_not_letters():
    assert check_languages("xquad-r", "de") == ("de",)  # a string is one code, not ('d', 'e')
    with pytest.raises(ValueError, match="No xquad-r languages"):
        check_languages("xquad-r", [])
    from xlir_utils.data.mmarco import load_mmarco

    with pytest.raises(ValueError, match="No mMARCO languages"):
        load_mmarco([])


def test_the_reverse_fold_guards_against_every_other_evaluation_set(tmp_path, monkeypatch, shared_data):
    """Notebook 03 used to add XQuAD-R to the evaluation sets even when training on it."""
    from xlir_utils.data import evaluation_sets, training_pairs

    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))
    reverse = config.load("smoke").replace(train_dataset="xquad-r", eval_datasets=("xquad-r", "mlqa-r"),
                                           train_articles=2, eval_articles=1)
    sets = evaluation_sets(reverse)
    assert [r.name for r in sets] == ["mlqa-r"]
    pairs, report = training_pairs(reverse, sets)
    assert report["shared"] == 0 and set(pairs.dataset) == {"xquad-r-train"}


def test_the_dev_split_holds_out_whole_articles_in_every_language(mlqa, tmp_path, monkeypatch):
    from xlir_utils.data import Split

    dev = load_retrieval_set("mlqa-r", split=Split("dev", 0.15, 13))
    train = load_retrieval_set("mlqa-r", split=Split("train", 0.15, 13))
    assert (dev.name, train.name) == ("mlqa-r-dev", "mlqa-r-train")
    assert not set(dev.queries.question_id) & set(train.queries.question_id)
    assert len(dev.queries) + len(train.queries) == len(mlqa.queries)
    assert len(dev.candidates) + len(train.candidates) == len(mlqa.candidates)  # paragraphs go with their article
    n_articles = mlqa.candidates[mlqa.candidates.lang == "en"].article.nunique()
    assert dev.candidates[dev.candidates.lang == "en"].article.nunique() == round(0.15 * n_articles)
    assert set(dev.queries.lang) == set(mlqa.languages)  # every language keeps some dev questions
    again = load_retrieval_set("mlqa-r", split=Split("dev", 0.15, 13))
    assert again.queries.equals(dev.queries)  # seeded: the same split every time
    other = load_retrieval_set("mlqa-r", split=Split("dev", 0.15, 14))
    assert not other.queries.question_id.equals(dev.queries.question_id)


@pytest.fixture(scope="module")
def quick_pairs(shared_data, tmp_path_factory):
    """quick's evaluation sets, training pairs, leakage report and dev set, built once in a
    throw-away project."""
    from xlir_utils.data import evaluation_sets, retrieval_set, training_pairs

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XLIR_ROOT", str(tmp_path_factory.mktemp("quick-pairs")))
        cfg = config.load("quick")
        sets = evaluation_sets(cfg)
        pairs, report = training_pairs(cfg, sets)
        return sets, pairs, report, retrieval_set(cfg, "mlqa-r-dev")


def test_training_never_sees_the_dev_set(quick_pairs):
    from xlir_utils.data import retrieval_set

    sets, pairs, report, dev = quick_pairs
    assert [r.name for r in sets] == ["xquad-r", "mlqa-r-dev"]
    assert report["shared"] == 0 and not set(pairs.question_id) & set(dev.queries.question_id)
    with pytest.raises(LeakageError, match="mlqa-r-dev"):
        check_no_leakage(build_pairs(dev).head(20), [dev])
    with pytest.raises(ValueError, match="holds out no"):
        retrieval_set(config.load("paper"), "mlqa-r-dev")


def test_no_tatoeba_sentence_is_training_text(quick_pairs):
    """Tatoeba is an evaluation set: the leakage check refuses training pairs that contain its sentences."""
    import pandas as pd

    from xlir_utils.data import tatoeba_pairs

    _, pairs, report, _ = quick_pairs
    assert "tatoeba" in report["eval_sets"] and report["shared"] == 0
    de = tatoeba_pairs("de")
    assert len(de) == 1000 and len(tatoeba_pairs("th")) == 548
    leaked = pd.concat([pairs.head(3), pairs.head(1).assign(question_id="t", passage=de.xx.iat[5])])
    with pytest.raises(LeakageError, match="tatoeba"):
        check_no_leakage(leaked, [], other_texts={"tatoeba": de.xx.tolist()})


def test_mkqa_questions_are_parallel_and_never_evaluation_text(shared_data):
    from xlir_utils.data.mkqa import MKQA_LANGS, mkqa_parallel, mkqa_questions
    from xlir_utils.data.pairs import normalise_text

    assert MKQA_LANGS == ("ar", "en", "es", "ru", "tr", "zh")
    zh = mkqa_questions("zh")  # the file says zh_cn: ids are still joined across languages
    assert len(zh) == 1758 and set(zh) == set(mkqa_questions("en"))
    pairs = mkqa_parallel("en", "ru")
    assert len(pairs) == 1758 and pairs[0][0].startswith("who sings i hear you knocking")
    xquad = load_retrieval_set("xquad-r")
    evaluated = {normalise_text(t) for t in xquad.queries.text} | {normalise_text(t) for t in xquad.candidates.sentence}
    assert not any(normalise_text(q) in evaluated for q in zh.values())
    with pytest.raises(ValueError, match="MKQA has no questions in 'de'.*ar, en, es, ru, tr, zh"):
        mkqa_questions("de")


def test_a_file_inside_a_zip_archive_is_downloaded_and_verified(tmp_path, monkeypatch, shared_data):
    """MKQA ships as one zip: the member is extracted and checked against the file's sha256."""
    import dataclasses
    import zipfile

    fetch_mod = importlib.import_module("xlir_utils.data.fetch")

    archive = tmp_path / "mkqa_dev.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(shared_data / "mkqa-mia-dev/mkqa-tr.jsonl", "mkqa_dev/mkqa-tr.jsonl")
        zf.writestr("mkqa_dev/mkqa-es.jsonl", "not the file\n")
    isolated_project(tmp_path, monkeypatch, None)
    entry = dataclasses.replace(REGISTRY["mkqa-mia-dev/mkqa-tr.jsonl"], url=archive.as_uri())
    target = paths.raw_dir() / entry.path
    fetch_mod._download(entry, target)
    assert target.read_bytes() == (shared_data / "mkqa-mia-dev/mkqa-tr.jsonl").read_bytes()
    wrong = dataclasses.replace(entry, member="mkqa_dev/mkqa-es.jsonl", path="mkqa-mia-dev/x.jsonl")
    with pytest.raises(ChecksumMismatch, match="mkqa-es.jsonl in file:.*nothing was written"):
        fetch_mod._download(wrong, paths.raw_dir() / wrong.path)
    assert not (paths.raw_dir() / wrong.path).exists()
