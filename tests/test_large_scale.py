"""Mewsli-X and MIRACL loaders on fixtures written in their exact upstream formats, resumable
sharded encoding, FAISS against the exact engine, and the large-corpus metrics."""
from __future__ import annotations

import gzip
import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from conftest import isolated_project, random_unit_embeddings

from xlir_utils import large_scale as L
from xlir_utils.data import DataUnavailable, load_retrieval_set
from xlir_utils.data import mewsli_x, miracl
from xlir_utils.metrics import rank_relevant_grouped


# ------------------------------------------------------------------ fixtures in the upstream formats
def write_mewsli(root):
    folder = root / "mewsli-x"
    folder.mkdir(parents=True)
    entities = [
        {"entity_id": "Q90", "title": "Paris", "description": "Paris is the capital of France. It is on the Seine.",
         "description_url": "https://en.wikipedia.org/wiki/Paris", "description_language": "en",
         "sentence_spans": [{"start": 0, "end": 31}, {"start": 32, "end": 51}]},
        {"entity_id": "Q64", "title": "Berlin", "description": "Berlin ist die Hauptstadt Deutschlands.",
         "description_url": "https://de.wikipedia.org/wiki/Berlin", "description_language": "de",
         "sentence_spans": [{"start": 0, "end": 38}]},
    ]
    (folder / "candidate_set_entities.jsonl").write_text("\n".join(json.dumps(e) for e in entities) + "\n")
    text = "Gestern war ich in Paris. Es regnete {stark}."
    article = {"context": {"document_id": "1", "document_url": "u", "document_title": "t", "section_title": "",
                           "language": "de", "text": text, "sentence_spans": [{"start": 0, "end": 25},
                                                                               {"start": 26, "end": 45}]},
               "mentions": [{"example_id": "ex1", "entity_id": "Q90",
                             "mention_span": {"start": 19, "end": 24, "text": "Paris"}}]}
    fa = {"context": {"document_id": "2", "language": "xx", "text": "ignored", "sentence_spans": []}, "mentions": []}
    (folder / "wikinews_mentions-dev.jsonl").write_text(json.dumps(article) + "\n" + json.dumps(fa) + "\n")
    return folder


def write_miracl(root, lang="sw"):
    base = root / "miracl" / f"miracl-v1.0-{lang}"
    (base / "topics").mkdir(parents=True)
    (base / "qrels").mkdir(parents=True)
    (base / "topics" / f"topics.miracl-v1.0-{lang}-dev.tsv").write_text("1\tmji mkuu wa kenya\n2\tmlima mrefu\n")
    (base / "qrels" / f"qrels.miracl-v1.0-{lang}-dev.tsv").write_text(
        "1\tQ0\t10#0\t1\n1\tQ0\t10#1\t0\n2\tQ0\t20#0\t1\n2\tQ0\t99#9\t1\n")
    corpus = root / "miracl-corpus" / f"miracl-corpus-v1.0-{lang}"
    corpus.mkdir(parents=True)
    docs = [{"docid": "10#0", "title": "Nairobi", "text": "Nairobi ni mji mkuu wa Kenya."},
            {"docid": "10#1", "title": "Nairobi", "text": "Ina watu wengi."},
            {"docid": "20#0", "title": "Kilimanjaro", "text": "Mlima mrefu zaidi Afrika."}]
    with gzip.open(corpus / "docs-0.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write("\n".join(json.dumps(d) for d in docs) + "\n")
    return root


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
