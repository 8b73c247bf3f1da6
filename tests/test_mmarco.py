"""The mMARCO loader (paper profile), offline, on tiny fixtures in mMARCO's exact upstream formats.

The fixtures mirror the hub repository ``unicamp-dl/mmarco``: ``data/triples.train.ids.small.tsv``
(``qid<TAB>pos<TAB>neg``), ``data/google/queries/train/<language>_queries.train.tsv`` and
``data/google/collections/<language>_collection.tsv`` (``id<TAB>text``), UTF-8, LF line ends.
"""
from __future__ import annotations

import hashlib

import pandas as pd
import pytest
import torch

from conftest import isolated_project
from helpers import LANGS, MISSING_IN_ZH, QIDS, passage, query, write_fixture
from xlir_utils import config
from xlir_utils.data import (
    ChecksumMismatch, DataError, DataUnavailable, LeakageError, check_no_leakage, drop_overlap, load_mmarco,
    load_retrieval_set, mmarco_pairs, training_pairs,
)
from xlir_utils.data.mmarco import TRIPLES_FILE, collection_file, git_blob_sha1, queries_file, sample_triples
from xlir_utils.sampling import HybridBatchSampler
from xlir_utils.training import RunSpec, pairs_digest, train_run


@pytest.fixture
def mmarco_dir(tmp_path, monkeypatch):
    """An isolated project whose offline directory holds the fixture; offline only."""
    isolated_project(tmp_path, monkeypatch, tmp_path / "offline")
    triples = write_fixture(tmp_path / "offline")
    return tmp_path / "offline", triples


def test_sample_is_parallel_matched_by_ids_and_drops_incomplete_queries(mmarco_dir):
    _, triples = mmarco_dir
    table = load_mmarco(LANGS, n_queries=100, seed=1, cache=False)
    first = {}
    for q, p, n in triples:
        first.setdefault(q, (p, n))
    kept = sorted(set(QIDS) - {MISSING_IN_ZH})
    assert sorted(table.qid.unique()) == kept
    assert len(table) == len(kept) * len(LANGS)
    for row in table.itertuples():
        pos, neg = first[row.qid]
        assert row.query == query(row.qid, row.lang)
        assert row.passage == passage(pos, row.lang)
        assert row.negative == passage(neg, row.lang)


def test_subsample_is_seeded_and_scan_lines_limits_the_pool(mmarco_dir):
    a = load_mmarco(LANGS, n_queries=4, seed=1, cache=False)
    b = load_mmarco(LANGS, n_queries=4, seed=1, cache=False)
    pd.testing.assert_frame_equal(a, b)
    picks = {tuple(sorted(load_mmarco(LANGS, n_queries=4, seed=s, cache=False).qid.unique())) for s in range(6)}
    assert len(picks) > 1  # the seed matters
    root, triples = mmarco_dir
    head = sample_triples(root / "mmarco" / TRIPLES_FILE, 100, 0, scan_lines=3)
    assert set(head.qid) == {q for q, _, _ in triples[:3]}


def test_processed_sample_is_cached_by_its_parameters(mmarco_dir, tmp_path):
    root, _ = mmarco_dir
    first = load_mmarco(LANGS, n_queries=5, seed=2)
    cached = list((tmp_path / "proj" / "data" / "processed" / "mmarco").glob("*.parquet"))
    assert len(cached) == 1
    (root / "mmarco" / TRIPLES_FILE).unlink()  # the cache must not need the raw files any more
    pd.testing.assert_frame_equal(load_mmarco(LANGS, n_queries=5, seed=2), first)
    with pytest.raises(DataUnavailable, match="triples.train.ids.small.tsv"):
        load_mmarco(LANGS, n_queries=6, seed=2)  # other parameters: another key, needs the raw file


def test_missing_offline_file_names_it_and_the_fix(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    isolated_project(tmp_path, monkeypatch, tmp_path / "empty")
    with pytest.raises(DataUnavailable) as err:
        load_mmarco(LANGS, n_queries=3, cache=False)
    message = str(err.value)
    assert "triples.train.ids.small.tsv" in message and "unicamp-dl/mmarco" in message
    assert "XLIR_DATA_DIR/mmarco" in message and "paper profile" in message


def test_sha256sums_are_checked(mmarco_dir):
    root, _ = mmarco_dir
    base = root / "mmarco"
    files = [TRIPLES_FILE] + [f(lang) for lang in LANGS for f in (queries_file, collection_file)]
    sums = {f: hashlib.sha256((base / f).read_bytes()).hexdigest() for f in files}
    lines = [f"{sums[f]}  ./{f}" if i % 2 else f"{sums[f]} *{f}" for i, f in enumerate(files)]  # sha256sum styles
    (base / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    assert len(load_mmarco(LANGS, n_queries=3, cache=False)) == 9
    bad = [ln.replace(sums[queries_file("en")], "0" * 64) for ln in lines]
    (base / "SHA256SUMS").write_text("\n".join(bad) + "\n")
    with pytest.raises(ChecksumMismatch, match="english_queries.train.tsv"):
        load_mmarco(LANGS, n_queries=3, cache=False)
    (base / "SHA256SUMS").write_text("\n".join(lines[:1]) + "\n")  # an entry missing
    with pytest.raises(DataError, match="no entry for data/google/queries/train/english"):
        load_mmarco(LANGS, n_queries=3, cache=False)
    (base / "SHA256SUMS").write_text("not-a-digest  data/x.tsv\n")
    with pytest.raises(DataError, match="SHA256SUMS:1: expected"):
        load_mmarco(LANGS, n_queries=3, cache=False)


def test_unknown_language_is_rejected(mmarco_dir):
    with pytest.raises(ValueError, match="no language 'el'"):
        load_mmarco(("en", "el"), n_queries=3, cache=False)


def test_pairs_feed_the_hybrid_sampler(mmarco_dir):
    parallel = load_mmarco(LANGS, n_queries=100, seed=1, cache=False)
    pairs = mmarco_pairs(parallel, hard_negatives=True)
    n = parallel.qid.nunique()
    assert len(pairs) == n * len(LANGS) ** 2
    assert (pairs.query_lang == pairs.passage_lang).sum() == n * len(LANGS)
    assert not pairs.duplicated(["question_id", "query_lang", "passage_lang"]).any()
    row = pairs[(pairs.query_lang == "de") & (pairs.passage_lang == "zh")].iloc[0]
    qid = int(row.question_id.removeprefix("mmarco-"))
    src = parallel.set_index(["qid", "lang"])
    assert row.query == src.loc[(qid, "de"), "query"] and row.passage == src.loc[(qid, "zh"), "passage"]
    assert row.negative == src.loc[(qid, "zh"), "negative"]
    sampler = HybridBatchSampler(pairs, 3, 0.5, seed=0)
    for info in sampler.plan(0):
        batch = pairs.iloc[list(info.indices)]
        assert batch.question_id.is_unique
        if info.kind == "mono":
            assert batch.query_lang.nunique() == 1 and (batch.query_lang == batch.passage_lang).all()
        else:
            assert (batch.query_lang != batch.passage_lang).all()
    assert "negative" not in mmarco_pairs(parallel).columns


def test_training_pairs_for_the_paper_profile_run_the_leakage_check(tmp_path, monkeypatch, shared_data):
    xquad = load_retrieval_set("xquad-r", articles=1)  # read from shared/data before the redirect
    leaked = xquad.candidates.sentence.iloc[0]
    isolated_project(tmp_path, monkeypatch, tmp_path / "offline")
    write_fixture(tmp_path / "offline")
    profile = config.load("paper").replace(train_languages=LANGS, train_queries=4, hard_negatives=True,
                                           tatoeba_languages=())  # (Tatoeba's 41 languages need the network)
    assert profile.train_dataset == "mmarco"
    pairs, report = training_pairs(profile, [xquad])
    assert report["shared"] == 0 and report["dropped_overlap_rows"] == 0
    assert len(pairs) == 4 * 9 and "negative" in pairs.columns

    # a positive passage that happens to equal an XQuAD-R sentence: its rows are dropped, counted
    write_fixture(tmp_path / "leaky", extra_passages=[(q * 10 + k, leaked) for q in QIDS[:2] for k in (1, 2)])
    monkeypatch.setenv("XLIR_DATA_DIR", str(tmp_path / "leaky"))
    leaky = profile.replace(seed=14, train_queries=100)
    pairs, report = training_pairs(leaky, [xquad])
    assert report["shared"] == 0 and report["dropped_overlap_rows"] == 2 * 9  # 2 queries x 9 language pairs
    assert leaked not in set(pairs.passage) and len(pairs) == (9 - 2) * 9
    with pytest.raises(LeakageError, match="shared with xquad-r"):  # the check itself still guards
        check_no_leakage(mmarco_pairs(load_mmarco(LANGS, n_queries=100, seed=14, cache=False)), [xquad])


def test_hard_negatives_enter_the_loss_and_the_run_digest(mmarco_dir, tmp_path):
    pairs = mmarco_pairs(load_mmarco(LANGS, n_queries=100, seed=1, cache=False), hard_negatives=True)
    assert pairs_digest(pairs) != pairs_digest(pairs.drop(columns="negative"))
    vocab = {t: i for i, t in enumerate(pd.unique(pairs[["query", "passage", "negative"]].to_numpy().ravel()))}
    calls = []

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(len(vocab), 8)

    def embed_fn(model, texts, langs, kind):
        calls.append((kind, list(texts), list(langs)))
        return model.emb(torch.tensor([vocab[t] for t in texts]))

    cfg = config.TrainConfig(steps=2, batch_size=3, checkpoint_every=10)
    spec = RunSpec("hn", "toy", "hybrid", 0.5, 0, cfg, len(pairs), pairs_digest(pairs))
    train_run(Toy(), pairs, spec, tmp_path / "run", embed_fn=embed_fn, save_fn=lambda m, f: None,
              show_progress=False)
    assert len(calls) == 2 * 3  # query, passage, negative per step
    negatives = calls[2::3]
    assert all(kind == "passage" for kind, _, _ in negatives)
    # the negatives are the passage-language BM25 negatives of the batch's rows
    by_text = pairs.set_index("negative")
    for _, texts, langs in negatives:
        assert all(by_text.loc[[t]].passage_lang.iloc[0] == lang for t, lang in zip(texts, langs))
    # and they enter the loss: same init, same batches, without them the first-step loss is lower
    losses = {}
    for name, table in (("with", pairs), ("without", pairs.drop(columns="negative"))):
        torch.manual_seed(0)
        run_spec = RunSpec(name, "toy", "hybrid", 0.5, 0, cfg, len(table), pairs_digest(table))
        train_run(Toy(), table, run_spec, tmp_path / name, embed_fn=embed_fn, save_fn=lambda m, f: None,
                  show_progress=False)
        losses[name] = pd.read_csv(tmp_path / name / "train_log.csv").loss.iloc[0]
    assert losses["with"] > losses["without"] + 1e-3, losses


def test_pairs_align_when_languages_hold_different_queries():
    parallel = pd.DataFrame({
        "qid": [3, 1, 2, 2, 3],
        "lang": ["en", "en", "en", "de", "de"],
        "query": ["en q3", "en q1", "en q2", "de q2", "de q3"],
        "passage": ["en p3", "en p1", "en p2", "de p2", "de p3"],
        "negative": ["en n3", "en n1", "en n2", "de n2", "de n3"],
    })
    pairs = mmarco_pairs(parallel, hard_negatives=True)
    assert len(pairs) == 3 + 2 + 2 * 2  # en-en, de-de, en-de and de-en for the shared qids 2 and 3
    for row in pairs.itertuples():
        qid = row.question_id.removeprefix("mmarco-")
        assert row.query == f"{row.query_lang} q{qid}" and row.passage == f"{row.passage_lang} p{qid}"
        assert row.negative == f"{row.passage_lang} n{qid}"


def test_negatives_count_in_the_leakage_check(shared_data):
    xquad = load_retrieval_set("xquad-r", articles=1)
    sentence = xquad.candidates.sentence.iloc[3]
    pairs = pd.DataFrame({"question_id": ["a", "b"], "query_lang": "en", "query": ["q a", "q b"],
                          "passage_lang": "en", "passage": ["p a", "p b"], "dataset": "t",
                          "negative": ["n a", sentence]})
    with pytest.raises(LeakageError):
        check_no_leakage(pairs, [xquad])
    assert drop_overlap(pairs, [xquad]).question_id.tolist() == ["a"]


def test_hub_download_is_verified_and_reused(tmp_path, monkeypatch):
    """The hub path with a fake hub: the published digest is checked, a bad file deleted."""
    import xlir_utils.data.mmarco as mm

    (tmp_path / "empty").mkdir()
    isolated_project(tmp_path, monkeypatch, tmp_path / "empty", offline=False)
    payload = b"1\t11\t17\n2\t21\t27\n"
    published = {"digest": ("sha256", hashlib.sha256(payload).hexdigest())}
    downloads = []

    def fake_download(relpath, commit):
        path = tmp_path / "proj" / "data" / "raw" / "mmarco" / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        downloads.append(commit)
        return path

    monkeypatch.setattr(mm.MMARCO, "commit", lambda: "c0ffee")
    monkeypatch.setattr(mm.MMARCO, "digest", lambda relpath, commit: published["digest"])
    monkeypatch.setattr(mm.MMARCO, "download", fake_download)
    got = mm.mmarco_file(TRIPLES_FILE)
    assert got.read_bytes() == payload and downloads == ["c0ffee"]
    assert mm.mmarco_file(TRIPLES_FILE) == got and len(downloads) == 1  # verified before: reused
    marker = got.with_name(got.name + ".verified.json")
    assert '"commit": "c0ffee"' in marker.read_text()

    marker.unlink()
    published["digest"] = ("sha256", "0" * 64)
    with pytest.raises(ChecksumMismatch, match="was deleted"):
        mm.mmarco_file(TRIPLES_FILE)
    assert not got.exists() and not marker.exists()

    published["digest"] = ("git-sha1", mm.git_blob_sha1(fake_download(TRIPLES_FILE, "c0ffee")))
    assert mm.mmarco_file(TRIPLES_FILE).read_bytes() == payload  # a non-LFS file: its git blob id


def test_git_blob_sha1_is_gits(tmp_path):
    path = tmp_path / "hello"
    path.write_bytes(b"hello\n")
    assert git_blob_sha1(path) == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object hello`


def test_pairs_digest_in_chunks_is_the_plain_digest(monkeypatch):
    import xlir_utils.training.spec as spec

    pairs = mmarco_pairs(pd.DataFrame({"qid": [1, 2, 3] * 2, "lang": ["en"] * 3 + ["de"] * 3,
                                       "query": list("abcdef"), "passage": list("ghijkl"),
                                       "negative": list("mnopqr")}), hard_negatives=True)
    plain = hashlib.sha256()
    for col in ("question_id", "query_lang", "passage_lang", "query", "passage", "negative"):
        plain.update("\x1f".join(pairs[col].astype(str)).encode())
    monkeypatch.setattr(spec, "_DIGEST_CHUNK", 5)  # 12 rows: chunks of 5, 5, 2
    assert pairs_digest(pairs) == plain.hexdigest()[:16]


def test_hub_failure_is_one_clear_error(tmp_path, monkeypatch):
    """Online mode with the hub unreachable (simulated: no test may download 900 MB)."""
    import xlir_utils.data.mmarco as mm

    (tmp_path / "empty").mkdir()
    isolated_project(tmp_path, monkeypatch, tmp_path / "empty", offline=False)

    def unreachable():
        raise ConnectionError("Failed to resolve 'huggingface.co'")

    monkeypatch.setattr(mm.MMARCO, "commit", unreachable)
    with pytest.raises(DataUnavailable, match=r"Could not download data/triples.*unicamp-dl/mmarco.*XLIR_DATA_DIR/mmarco"):
        load_mmarco(LANGS, n_queries=3, cache=False)
