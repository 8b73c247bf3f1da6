"""The evaluation embedding store (notebooks 04 §3, 05): reuse, keys, damaged and unwritable
files, with a deterministic stand-in encoder on real XQuAD-R texts."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from helpers import stand_in_system as _system

from xlir_utils.systems.store import _store_key, embed_retrieval_set, embeddings_path, load_embeddings


def test_store_is_reused_and_keyed_by_fingerprint_and_texts(store_project, xquad_article):
    s = _system()
    q, c = embed_retrieval_set(s, xquad_article, "sentence", "smoke")
    assert s.encode.calls == 2 and q.shape == (len(xquad_article.queries), 16) and c.shape[0] == len(xquad_article.candidates)
    q2, c2 = embed_retrieval_set(s, xquad_article, "sentence", "smoke")
    assert s.encode.calls == 2 and np.array_equal(q, q2) and np.array_equal(c, c2)
    other = _system(encoder=s.encode, fingerprint="fp-2")  # another model under the same label
    embed_retrieval_set(other, xquad_article, "sentence", "smoke")
    assert s.encode.calls == 4
    embed_retrieval_set(other, xquad_article, "sentence+context", "smoke")  # other candidate texts
    assert s.encode.calls == 6
    assert embeddings_path("smoke", "sys", xquad_article.name).is_file()


def test_store_key_follows_every_text():
    class Table:
        def __init__(self, texts):
            self.text = texts

        def __len__(self):
            return len(self.text)

    class Rset:
        def __init__(self, queries, candidates):
            self.queries, self.candidates = Table(queries), Table(candidates)

        def candidate_texts(self, which):
            return self.candidates.text

    s = _system()
    base = _store_key(s, Rset(["q1", "q2"], ["c1"]), "sentence")
    assert _store_key(s, Rset(["q1", "q2"], ["c1"]), "sentence") == base
    assert _store_key(s, Rset(["q1", "q3"], ["c1"]), "sentence") != base
    assert _store_key(s, Rset(["q1", "q2"], ["c2"]), "sentence") != base
    assert _store_key(s, Rset(["q1", "q2"], ["c1"]), "sentence+context") != base
    assert _store_key(_system(fingerprint="fp-2"), Rset(["q1", "q2"], ["c1"]), "sentence") != base


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_store_is_rebuilt_with_a_warning(store_project, xquad_article, caplog, damage):
    """A truncated npz used to crash notebooks 04 and 05 with zipfile.BadZipFile on every rerun."""
    s = _system()
    q, c = embed_retrieval_set(s, xquad_article, "sentence", "smoke")
    path = embeddings_path("smoke", s.label, xquad_article.name)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 3], "garbage": b"\x00" * 500, "empty": b""}[damage])
    with caplog.at_level(logging.WARNING):
        q2, c2 = embed_retrieval_set(s, xquad_article, "sentence", "smoke")
    assert "unreadable" in caplog.text and str(path) in caplog.text and s.encode.calls == 4
    assert np.array_equal(q, q2) and np.array_equal(c, c2)
    assert load_embeddings(path, _store_key(s, xquad_article, "sentence")) is not None  # replaced
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_altered_numbers_are_caught_by_the_checksum(store_project, xquad_article, caplog):
    """A well-formed file whose vectors changed after writing was read as if intact before the
    store carried a checksum."""
    s = _system()
    q, c = embed_retrieval_set(s, xquad_article, "sentence", "smoke")
    path = embeddings_path("smoke", s.label, xquad_article.name)
    with np.load(path) as z:
        members = {name: z[name].copy() for name in z.files}
    members["candidates"][0, 0] += 0.25
    with open(path, "wb") as handle:
        np.savez(handle, **members)
    with caplog.at_level(logging.WARNING):
        assert load_embeddings(path, _store_key(s, xquad_article, "sentence")) is None
    assert "checksum" in caplog.text and str(path) in caplog.text
    q2, c2 = embed_retrieval_set(s, xquad_article, "sentence", "smoke")
    assert s.encode.calls == 4 and np.array_equal(c, c2)


def test_unwritable_store_keeps_the_embeddings(tmp_path, monkeypatch, xquad_article, caplog):
    monkeypatch.setenv("XLIR_ROOT", str(tmp_path / "proj"))
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("XLIR_CACHE_DIR", str(blocker))
    s = _system()
    with caplog.at_level(logging.WARNING):
        q, c = embed_retrieval_set(s, xquad_article, "sentence", "smoke")
    assert q.shape[0] == len(xquad_article.queries) and "could not store" in caplog.text
