"""Data fixtures in their exact upstream layouts, written by the tests that need them (plain
functions; ``tests/`` is on ``sys.path`` under pytest, as for ``conftest``)."""
from __future__ import annotations

import gzip
import json
import zlib

import numpy as np

from xlir_utils.data.mmarco import TRIPLES_FILE, collection_file, queries_file


# ------------------------------------------------------------------ stand-in encoders
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



def stand_in_system(label: str = "sys", encoder=None, fingerprint: str = "fp-1"):
    """A zero-shot system around a :class:`CountingEncoder` (the store and paired-comparison tests)."""
    from xlir_utils.systems import System, SystemSpec

    return System(label, SystemSpec("zero-shot", "m"), fingerprint, encoder or CountingEncoder())


# ------------------------------------------------------------------ Mewsli-X and MIRACL
def write_mewsli(root):
    """A tiny Mewsli-X (XTREME-R layout) under ``root/mewsli-x``: two entities, one German mention of
    Paris in a dev article, and one empty article; returns the folder."""
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
    """A tiny MIRACL dev split of ``lang`` (topics, qrels, a gzipped corpus; the hub layout) under
    ``root``; qrels name one document that the corpus lacks. Returns ``root``."""
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


# ------------------------------------------------------------------ mMARCO (the hub layout of unicamp-dl/mmarco)
LANGS = ("en", "de", "zh")
QIDS = [1185869, 1185868, 597651, 403613, 1183785, 312651, 80385, 645590, 645337, 186154]
MISSING_IN_ZH = 80385  # a query whose Chinese translation is absent upstream: must be dropped


def query(qid: int, lang: str) -> str:
    return f"{lang} query {qid}: what is item {qid % 97}?"


def passage(pid: int, lang: str) -> str:
    return f"{lang} passage {pid} about item {pid % 89}."


def write_fixture(root, qids=QIDS, langs=LANGS, extra_passages=()):
    """Write a tiny mMARCO in the hub layout under ``root/mmarco``; return the triples."""
    base = root / "mmarco"
    rng = np.random.default_rng(0)
    triples = []
    for qid in qids:  # two triples per query, the first one is the one the kit keeps
        triples += [(qid, qid * 10 + 1, qid * 10 + 7), (qid, qid * 10 + 2, qid * 10 + 8)]
    triples = [triples[i] for i in rng.permutation(len(triples))]
    (base / "data").mkdir(parents=True)
    (base / TRIPLES_FILE).write_text("".join(f"{q}\t{p}\t{n}\n" for q, p, n in triples), encoding="utf-8")
    pids = sorted({p for _, p, _ in triples} | {n for _, _, n in triples} | {5, 6, 7})
    for lang in langs:
        qpath, cpath = base / queries_file(lang), base / collection_file(lang)
        qpath.parent.mkdir(parents=True, exist_ok=True)
        cpath.parent.mkdir(parents=True, exist_ok=True)
        keep = [q for q in sorted(qids) if not (lang == "zh" and q == MISSING_IN_ZH)]
        qpath.write_text("".join(f"{q}\t{query(q, lang)}\n" for q in keep), encoding="utf-8")
        texts = {p: passage(p, lang) for p in pids}
        texts.update({p: t for p, t in extra_passages})
        cpath.write_text("".join(f"{p}\t{t}\n" for p, t in texts.items()), encoding="utf-8")
    return triples
