"""Mewsli-X and MIRACL loaders on fixtures written in their exact upstream formats, resumable
sharded encoding, FAISS against the exact engine, and the large-corpus metrics."""
from __future__ import annotations

import hashlib
import shutil
import zlib

import faiss
import numpy as np
import pandas as pd
import pytest
from conftest import isolated_project, random_unit_embeddings
from helpers import write_mewsli, write_miracl

from xlir_utils import config
from xlir_utils import large_scale as L
from xlir_utils.data import DataUnavailable, load_retrieval_set
from xlir_utils.data import mewsli_x, miracl
from xlir_utils.metrics import rank_relevant_grouped
from xlir_utils.systems.record import System, SystemSpec


# ------------------------------------------------------------------ fixtures in the upstream formats
def test_mewsli_x_queries_and_candidates_as_xtreme_r_builds_them(tmp_path, monkeypatch):
    isolated_project(tmp_path, monkeypatch, tmp_path / "offline")
    write_mewsli(tmp_path / "offline")
    cands = mewsli_x.mewsli_candidates()
    assert cands.entity_id.tolist() == ["Q90", "Q64"]
    assert cands.text.iat[0] == "Paris is the capital of France. It is on the Seine."  # sentences, no title
    q = mewsli_x.mewsli_queries("dev")
    assert len(q) == 1 and q.lang.iat[0] == "de" and q.entity_id.iat[0] == "Q90"
    assert q.text.iat[0] == "Paris: Gestern war ich in { Paris } ."  # its sentence only, mention in braces


def test_mewsli_x_missing_says_how_to_prepare_it(tmp_path, monkeypatch):
    (tmp_path / "offline").mkdir()
    isolated_project(tmp_path, monkeypatch, tmp_path / "offline")
    with pytest.raises(DataUnavailable, match=r"candidate_set_entities\.jsonl.*mewsli-x_20220518_6\.zip.*get-mewsli-x"):
        mewsli_x.mewsli_candidates()


def test_miracl_files_in_the_hub_layout_are_read_and_verified(tmp_path, monkeypatch):
    isolated_project(tmp_path, monkeypatch, tmp_path / "offline")
    write_miracl(tmp_path / "offline")
    topics, qrels = miracl.miracl_topics("sw"), miracl.miracl_qrels("sw")
    assert topics.qid.tolist() == ["1", "2"] and qrels.relevance.tolist() == [1, 0, 1, 1]
    corpus = pd.concat(list(miracl.miracl_corpus("sw")))
    assert corpus.docid.tolist() == ["10#0", "10#1", "20#0"] and corpus.text.iat[0].startswith("Nairobi Nairobi ni")
    root = tmp_path / "offline" / "miracl"
    relpath = miracl.topics_file("sw")
    (root / "SHA256SUMS").write_text(f"{'0' * 64}  {relpath}\n")
    with pytest.raises(Exception, match="expected"):
        miracl.miracl_topics("sw")
    good = hashlib.sha256((root / relpath).read_bytes()).hexdigest()
    (root / "SHA256SUMS").write_text(f"{good}  {relpath}\n")
    assert len(miracl.miracl_topics("sw")) == 2
    with pytest.raises(ValueError, match="no language 'xx'"):
        miracl.miracl_topics("xx")


def test_miracl_offline_error_names_the_file_source_and_fix(tmp_path, monkeypatch):
    (tmp_path / "offline").mkdir()
    isolated_project(tmp_path, monkeypatch, tmp_path / "offline")
    with pytest.raises(DataUnavailable, match=r"miracl/miracl file miracl-v1.0-sw/topics.*HF_TOKEN.*XLIR_DATA_DIR/miracl/"):
        miracl.miracl_topics("sw")


# ------------------------------------------------------------------ sharded encoding, FAISS, metrics
def test_sharded_encoding_resumes_and_matches_one_pass(tmp_path, caplog):
    rng = np.random.default_rng(0)
    texts = [f"text {i}" for i in range(23)]
    table = {t: v / np.linalg.norm(v) for t, v in zip(texts, rng.standard_normal((23, 8)).astype(np.float32))}
    calls = []

    def encode(chunk):
        calls.append(len(chunk))
        return np.stack([table[t] for t in chunk])

    folder = tmp_path / "s"
    L.encode_shards(encode, texts, folder, fingerprint="fp", shard_size=5, rank=0, world=2)  # shards 0, 2, 4
    L.encode_shards(encode, texts, folder, fingerprint="fp", shard_size=5, rank=1, world=2)  # shards 1, 3
    assert calls == [5, 5, 3, 5, 5]
    np.testing.assert_array_equal(L.load_shards(folder, 23, 5), np.stack([table[t] for t in texts]))
    L.encode_shards(encode, texts, folder, fingerprint="fp", shard_size=5)
    assert len(calls) == 5  # every shard reused
    shard = folder / "shard-000002.npz"
    shard.write_bytes(shard.read_bytes()[:200])  # a kill mid-write would leave the old file; damage anyway
    with caplog.at_level("WARNING"):
        L.encode_shards(encode, texts, folder, fingerprint="fp", shard_size=5)
    assert calls[-1] == 5 and len(calls) == 6 and "unreadable" in caplog.text
    L.encode_shards(encode, texts, folder, fingerprint="another model", shard_size=5)
    assert len(calls) == 6 + 5


def test_a_damaged_shard_is_named_on_load_and_encoded_again(tmp_path, caplog):
    texts = [f"text {i}" for i in range(12)]
    calls = []

    def encode(chunk):
        calls.append(len(chunk))
        return np.stack([np.full(4, float(t.split()[1]), np.float32) for t in chunk])

    folder = tmp_path / "s"
    L.encode_shards(encode, texts, folder, fingerprint="fp", shard_size=5)
    whole = L.load_shards(folder, 12, 5)
    shard = L.shard_path(folder, 1)
    with np.load(shard) as z:  # well-formed, but its numbers changed after writing
        members = {name: z[name].copy() for name in z.files}
    members["embeddings"][2, 1] = -1.0
    with open(shard, "wb") as handle:
        np.savez(handle, **members)
    with caplog.at_level("WARNING"), pytest.raises(ValueError, match="shard-000001.npz is damaged"):
        L.load_shards(folder, 12, 5)
    assert "checksum mismatch" in caplog.text and str(shard) in caplog.text
    L.encode_shards(encode, texts, folder, fingerprint="fp", shard_size=5)
    assert calls == [5, 5, 2, 5]  # only the damaged shard again
    np.testing.assert_array_equal(L.load_shards(folder, 12, 5), whole)
    assert sorted(p.name for p in folder.iterdir()) == [f"shard-00000{i}.npz" for i in range(3)]


def test_index_is_written_atomically(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    target = tmp_path / "index-flat.faiss"
    L.write_index(L.build_index(x[:50]), target)
    L.write_index(L.build_index(x), target)  # replaced
    assert [p.name for p in tmp_path.iterdir()] == ["index-flat.faiss"]
    back = faiss.read_index(str(target))
    assert back.ntotal == 200
    np.testing.assert_array_equal(L.search(back, x[:5], 3)[1], L.search(L.build_index(x), x[:5], 3)[1])


def test_faiss_flat_ranks_equal_the_exact_engine_on_xquad_r(shared_data):
    """On real XQuAD-R relevance (random embeddings: no ties), IndexFlatIP's ranking gives every
    relevant candidate the rank the exact engine gives it."""
    rset = load_retrieval_set("xquad-r", articles=2)
    q, c = random_unit_embeddings(rset, 32, seed=1)
    index = L.build_index(c)
    _, top = L.search(index, q, len(c))
    faiss_ranks = L.ranks_of_relevant(top, rset.relevant)
    exact = rank_relevant_grouped(q, c, rset.relevant).ranks_in_pool()
    np.testing.assert_array_equal(np.sort(faiss_ranks, axis=1), exact)


def test_approximate_indexes_are_measured_against_flat():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    flat = L.build_index(x)
    for kind in ("ivf", "hnsw"):
        recall = L.recall_against_flat(L.build_index(x, kind), flat, x[:50], k=10)
        assert 0.5 < recall <= 1.0, (kind, recall)
    with pytest.raises(ValueError, match="index kind"):
        L.build_index(x, "lsh")


def test_mewsli_map20_and_miracl_ranks():
    top = np.array([[3, 1, 2] + [9] * 17, [5] * 20, [7, 8] + [0] * 18])
    out = L.mewsli_map20(top, gold=[1, 4, 8], langs=["de", "de", "en"]).set_index("lang")["map@20"]
    assert out["de"] == pytest.approx((1 / 2 + 0) / 2) and out["en"] == pytest.approx(1 / 2)
    assert out["all"] == pytest.approx((0.25 + 0.5) / 2)  # the mean over languages
    ranks = L.ranks_of_relevant(np.array([[4, 2, 9, 1]]), [[1, 7]])
    assert ranks[0, 0] == 4 and np.isinf(ranks[0, 1])


def test_large_scale_suites_on_upstream_fixtures_reuse_their_shards(tmp_path, monkeypatch):
    """Notebook 04 §9 on fixtures: both suites, labelled rows, and a rerun that encodes no passage."""
    offline = tmp_path / "offline"
    isolated_project(tmp_path, monkeypatch, offline)
    mewsli = write_mewsli(offline)
    shutil.copy(mewsli / "wikinews_mentions-dev.jsonl", mewsli / "wikinews_mentions-test.jsonl")
    write_miracl(offline, "sw")
    kinds = []

    def encode(texts, langs, kind):
        kinds.append(kind)
        out = np.stack([np.random.default_rng(zlib.crc32(t.encode())).standard_normal(8) for t in texts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    profile = config.load("smoke").replace(large_scale=("mewsli-x", "miracl"), miracl_languages=("sw",))
    system = System("toy-s13", SystemSpec("zero-shot", "toy"), "fp", encode, name="toy", seed=13)
    out = L.run_large_scale(profile, [system])
    assert set(out.dataset) == {"mewsli-x", "miracl"} and out.value.between(0, 1).all()
    assert set(out.system) == {"toy"} and set(out.model) == {"toy-s13"} and set(out.seed) == {13}
    assert set(out[out.dataset == "miracl"].lang) == {"sw", "mean", "median"}
    assert kinds.count("passage") == 2
    again = L.run_large_scale(profile, [system])
    assert kinds.count("passage") == 2  # the shards were reused
    pd.testing.assert_frame_equal(again, out)
