"""Word alignment by IBM Model 1, symmetrised by intersection: the bilingual lexicons'
aligner (notebook 01 §6).

IBM Model 1 (Brown et al. 1993) learns t(target word | source word) by expectation
maximisation over sentence pairs, with a NULL source word. The Viterbi link of each target
word is its most probable source word; running both directions and keeping the links both
agree on (intersection, Och & Ney 2003) gives high-precision one-to-one links. Everything is
a fixed sequence of array operations, so the same sentences give the same links, bit for bit
(the sampling aligner eflomal draws its seed from ``/dev/urandom`` and offers no seed).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

__all__ = ["align_intersection", "ibm1", "viterbi_links"]

NULL = 0  # index of the NULL source word


def _index(sentences: Sequence[Sequence[str]], null: bool) -> tuple[list[np.ndarray], list[str]]:
    vocab: dict[str, int] = {"<null>": NULL} if null else {}
    ids = []
    for sent in sentences:
        ids.append(np.array([vocab.setdefault(w, len(vocab)) for w in sent], dtype=np.int64))
    return ids, list(vocab)


def _cooccurrences(src_ids: list[np.ndarray], tgt_ids: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Flat arrays over every (sentence, source position incl. NULL, target position): word ids
    (``s``, ``t``), positions (``i``: 0 is NULL; ``j``), sentence (``sent``) and target-word group
    (``g``: one per target word of a sentence)."""
    parts: dict[str, list] = {k: [] for k in ("s", "t", "i", "j", "sent", "g")}
    group = 0
    for k, (s, t) in enumerate(zip(src_ids, tgt_ids)):
        s = np.concatenate([[NULL], s])
        parts["s"].append(np.tile(s, len(t)))
        parts["i"].append(np.tile(np.arange(len(s)), len(t)))
        parts["t"].append(np.repeat(t, len(s)))
        parts["j"].append(np.repeat(np.arange(len(t)), len(s)))
        parts["sent"].append(np.full(len(s) * len(t), k))
        parts["g"].append(np.repeat(np.arange(group, group + len(t)), len(s)))
        group += len(t)
    return {k: np.concatenate(v).astype(np.int64) if v else np.zeros(0, np.int64) for k, v in parts.items()}


def ibm1(source: Sequence[Sequence[str]], target: Sequence[Sequence[str]], iterations: int = 5
         ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """IBM Model 1 trained by EM: (t(target word | source word) at every co-occurrence, the
    co-occurrences of :func:`_cooccurrences`)."""
    if len(source) != len(target):
        raise ValueError(f"{len(source)} source sentences against {len(target)} target sentences")
    src_ids, src_vocab = _index(source, null=True)
    tgt_ids, tgt_vocab = _index(target, null=False)
    co = _cooccurrences(src_ids, tgt_ids)
    n_groups = int(co["g"].max()) + 1 if len(co["g"]) else 0
    keys, pair = np.unique(co["s"] * max(len(tgt_vocab), 1) + co["t"], return_inverse=True)
    key_src = keys // max(len(tgt_vocab), 1)
    prob = np.full(len(keys), 1.0 / max(len(tgt_vocab), 1))  # uniform start
    for _ in range(iterations):
        weight = prob[pair]
        norm = np.bincount(co["g"], weights=weight, minlength=n_groups)  # per target word in a sentence
        counts = np.bincount(pair, weights=weight / norm[co["g"]], minlength=len(keys))
        totals = np.bincount(key_src, weights=counts, minlength=len(src_vocab))
        prob = counts / totals[key_src]
    return prob[pair], co


def viterbi_links(source: Sequence[Sequence[str]], target: Sequence[Sequence[str]], iterations: int = 5
                  ) -> list[set[tuple[int, int]]]:
    """Per sentence pair, the (source position, target position) links of IBM Model 1: each
    target word to its most probable source word (ties: the first); links to NULL dropped."""
    prob, co = ibm1(source, target, iterations)
    order = np.lexsort((co["i"], -prob, co["g"]))  # per group: highest probability, then first position
    first = order[np.r_[True, co["g"][order][1:] != co["g"][order][:-1]]] if len(order) else order
    first = first[co["i"][first] != NULL]
    links: list[set[tuple[int, int]]] = [set() for _ in source]
    for k, i, j in zip(co["sent"][first].tolist(), co["i"][first].tolist(), co["j"][first].tolist()):
        links[k].add((i - 1, j))
    return links


def align_intersection(source: Sequence[Sequence[str]], target: Sequence[Sequence[str]],
                       iterations: int = 5) -> Counter:
    """How often each (source word, target word) pair is linked in both directions' Viterbi
    alignments (the intersection symmetrisation)."""
    forward = viterbi_links(source, target, iterations)
    backward = viterbi_links(target, source, iterations)
    pairs: Counter = Counter()
    for src, tgt, fwd, bwd in zip(source, target, forward, backward):
        for i, j in fwd & {(i, j) for j, i in bwd}:
            pairs[(src[i], tgt[j])] += 1
    return pairs
