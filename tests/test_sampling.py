"""Tests for xlir_utils.sampling: X-X / X-Y / hybrid batch samplers on a synthetic pairs table."""
from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from xlir_utils.sampling import (
    REQUIRED_COLUMNS,
    XX_KIND,
    XY_KIND,
    HybridBatchSampler,
    describe_batch,
    sampling_alpha,
    xx_sampler,
    xy_sampler,
)
from xlir_utils.training.loop import planned_batches

LANGS = ("ar", "de", "en", "es", "hi", "vi", "zh")
B = 16


def make_pairs(n_items: int, dataset: str, seed: int, prefix: str) -> pd.DataFrame:
    """MLQA-R-like: each item in en plus 1-3 other languages; one row per (query_lang, passage_lang)."""
    rng = np.random.default_rng(seed)
    others = [lang for lang in LANGS if lang != "en"]
    rows = []
    for i in range(n_items):
        k = int(rng.integers(2, 5))
        langs = ["en", *rng.choice(others, size=k - 1, replace=False).tolist()]
        qid = f"{prefix}{i:05d}"
        for ql in langs:
            for pl in langs:
                rows.append((qid, ql, f"query {qid} in {ql} " + "x" * 80, pl, f"passage {qid} in {pl}", dataset))
    return pd.DataFrame(rows, columns=list(REQUIRED_COLUMNS))


@pytest.fixture(scope="module")
def pairs() -> pd.DataFrame:
    """2,000 MLQA-R-like items plus a second dataset of 500 items, rows shuffled."""
    df = pd.concat([make_pairs(2000, "mlqa-r", 1, "m"), make_pairs(500, "toy", 2, "t")], ignore_index=True)
    return df.sample(frac=1.0, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def mlqa(pairs: pd.DataFrame) -> pd.DataFrame:
    return pairs[pairs.dataset == "mlqa-r"].reset_index(drop=True)


@pytest.fixture(scope="module")
def item_langs(pairs: pd.DataFrame) -> dict[tuple[str, str], set[str]]:
    return pairs.groupby(["dataset", "question_id"])["query_lang"].agg(set).to_dict()


def batches(sampler: HybridBatchSampler, n_epochs: int):
    """(epoch, BatchInfo) for epochs 0..n_epochs-1."""
    for e in range(n_epochs):
        for info in sampler.plan(e):
            yield e, info


def test_xx_batches_are_monolingual_in_one_language(pairs):
    s = xx_sampler(pairs, B, seed=3)
    q, p = pairs.query_lang.to_numpy(), pairs.passage_lang.to_numpy()
    n, langs = 0, Counter()
    for _, info in batches(s, 12):
        idx = list(info.indices)
        assert info.kind == "mono" and len(idx) == B
        assert set(q[idx]) == {info.lang} and set(p[idx]) == {info.lang}
        n += 1
        langs[info.lang] += 1
    assert n > 1000
    assert set(langs) == set(LANGS)  # every language gets X-X batches


def test_xy_batches_are_cross_lingual_within_item_languages(pairs, item_langs):
    s = xy_sampler(pairs, B, seed=4)
    sub = pairs[["dataset", "question_id", "query_lang", "passage_lang"]].to_numpy()
    by_size: dict[int, Counter] = {3: Counter(), 4: Counter()}
    n = 0
    for _, info in batches(s, 12):
        assert info.kind == "cross" and info.lang == ""
        for ds, qid, ql, pl in sub[list(info.indices)]:
            assert ql != pl
            langs = item_langs[(ds, qid)]
            assert {ql, pl} <= langs
            if len(langs) in by_size:  # rank of the chosen ordered pair among the item's pairs
                ordered = [(a, b) for a in sorted(langs) for b in sorted(langs) if a != b]
                by_size[len(langs)][ordered.index((ql, pl))] += 1
        n += 1
    assert n > 1000
    for k, counts in by_size.items():  # uniform over the k*(k-1) ordered pairs (chi-square, generous)
        obs = np.array([counts[i] for i in range(k * (k - 1))], dtype=float)
        exp = obs.sum() / obs.size
        chi2 = ((obs - exp) ** 2 / exp).sum()
        assert chi2 < 3 * obs.size + 30, (k, obs)


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 1.0])
def test_hybrid_mono_share_matches_alpha(pairs, alpha):
    s = HybridBatchSampler(pairs, B, alpha, seed=5)
    kinds = [info.kind for _, info in batches(s, 20)]
    n = len(kinds)
    share = kinds.count("mono") / n
    assert n > 2000
    if alpha in (0.0, 1.0):
        assert share == alpha
    else:
        assert abs(share - alpha) < 4 * math.sqrt(alpha * (1 - alpha) / n) + 0.005, (share, n)


def test_no_question_id_twice_in_a_batch_nor_in_an_epoch(pairs):
    s = HybridBatchSampler(pairs, B, 0.5, seed=6)
    key = (pairs.dataset + "/" + pairs.question_id).to_numpy()
    for e in range(5):
        seen: set[str] = set()
        for info in s.plan(e):
            ids = key[list(info.indices)]
            assert len(set(ids)) == B
            assert set(pairs.dataset.iloc[list(info.indices)]) == {info.dataset}
            assert not seen & set(ids)
            seen |= set(ids)


def test_seed_determinism_and_set_epoch(pairs):
    a = HybridBatchSampler(pairs, B, 0.5, seed=7)
    b = HybridBatchSampler(pairs, B, 0.5, seed=7)
    c = HybridBatchSampler(pairs, B, 0.5, seed=8)
    assert a.plan(0) == b.plan(0) and a.plan(3) == b.plan(3)
    assert list(a) == list(b)
    assert [i.indices for i in a.plan(0)] != [i.indices for i in c.plan(0)]

    s = HybridBatchSampler(pairs, B, 0.5, seed=7)
    first = list(s)  # a complete pass ...
    assert s.epoch == 1  # ... moves on to the next epoch
    second = list(s)
    assert first != second
    s.set_epoch(0)
    assert list(s) == first
    s.set_epoch(1)
    assert list(s) == second
    assert [list(i.indices) for i in a.plan(1)] == second
    with pytest.raises(ValueError, match="epoch must be"):
        s.set_epoch(-1)


def test_epoch_length_and_coverage(mlqa, pairs):
    s = HybridBatchSampler(mlqa, B, 0.5, seed=9)
    n_items = mlqa.question_id.nunique()
    for e in range(3):
        s.set_epoch(e)
        n = len(s)
        got = list(s)
        assert len(got) == n
        # one dataset whose items all have en + a cross pair: the epoch stops only when < B items are left
        unused = n_items - sum(len(info.indices) for info in s.plan(e))
        assert unused < B
        assert n == (n_items - unused) // B
    # several datasets: every item still at most once, and lengths stay exact
    m = HybridBatchSampler(pairs, B, 0.5, seed=9)
    assert len(m) == len(list(m))
    items = [(pairs.dataset.iloc[r], pairs.question_id.iloc[r]) for info in m.plan(0) for r in info.indices]
    assert len(items) == len(set(items)) == B * len(m.plan(0))


def test_planned_steps_cross_epochs_and_history_logs(pairs):
    seen = []
    s = HybridBatchSampler(pairs, B, 0.5, seed=10, on_batch=seen.append)
    n0 = len(s)
    planned = planned_batches(s, n0 + 5)  # what the training loop runs
    assert planned == s.plan(0) + s.plan(1)[:5]
    got = list(s) + list(itertools.islice(iter(s), 5))  # a full pass moves on to epoch 1
    assert got == [list(i.indices) for i in planned]
    h = pd.DataFrame(s.history)
    assert list(h.columns) == ["epoch", "batch", "dataset", "kind", "lang", "lang_pairs", "n_rows"]
    assert h.epoch.tolist() == [0] * n0 + [1] * 5
    assert seen == s.history
    assert set(h.kind) <= {XX_KIND, XY_KIND}
    xx = h[h.kind == XX_KIND]
    assert (xx.lang_pairs == xx.lang + ">" + xx.lang).all()
    xy = h[h.kind == XY_KIND]
    assert (xy.lang == "").all() and xy.lang_pairs.str.contains(">").all()


@pytest.mark.parametrize(
    "temperature,expected_big", [(1.0, 0.8), (2.0, math.sqrt(2000) / (math.sqrt(2000) + math.sqrt(500))), (1e6, 0.5)]
)
def test_dataset_share_proportional_to_size_with_temperature(pairs, temperature, expected_big):
    s = HybridBatchSampler(pairs, B, 0.5, seed=11, dataset_temperature=temperature)
    assert s.dataset_probs["mlqa-r"] == pytest.approx(expected_big, abs=1e-3)
    ds = [info.dataset for _, info in batches(s, 40)]
    n = len(ds)
    share = ds.count("mlqa-r") / n
    assert n > 2000
    assert abs(share - expected_big) < 4 * math.sqrt(expected_big * (1 - expected_big) / n) + 0.01, (share, n)


def test_languages_restrict_training_rows(pairs):
    s = HybridBatchSampler(pairs, B, 0.5, seed=12, languages=["en", "de", "es"])
    q, p = pairs.query_lang.to_numpy(), pairs.passage_lang.to_numpy()
    for _, info in batches(s, 3):
        idx = list(info.indices)
        assert set(q[idx]) | set(p[idx]) <= {"en", "de", "es"}


def test_sampling_alpha_names():
    assert sampling_alpha("X-X") == 1.0 and sampling_alpha("x-y") == 0.0 and sampling_alpha("hybrid", 0.4) == 0.4
    with pytest.raises(ValueError, match="unknown sampling"):
        sampling_alpha("random")


def test_describe_batch(pairs):
    s = HybridBatchSampler(pairs, B, 0.5, seed=13)
    idx = next(iter(s))
    view = describe_batch(pairs, idx, width=30)
    assert list(view.index) == idx
    assert {"question_id", "query_lang", "passage_lang", "query", "passage"} <= set(view.columns)
    assert view["query"].str.len().max() <= 30 and view["query"].str.endswith("…").all()
    assert (view.question_id.to_numpy() == pairs.question_id.iloc[idx].to_numpy()).all()
    with pytest.raises(ValueError, match="outside the pairs table"):
        describe_batch(pairs, [len(pairs)])


@pytest.mark.parametrize(
    "change,kwargs,match",
    [
        ("drop_dataset", {}, r"lacks column\(s\) \['dataset'\]"),
        (None, {"alpha": -0.1}, "alpha"),
        (None, {"alpha": 1.5}, "alpha"),
        (None, {"alpha": float("nan")}, "alpha"),
        (None, {"batch_size": 0}, "batch_size must be a positive integer"),
        (None, {"batch_size": 3000}, "larger than the data"),
        ("tiny", {"alpha": 0.0}, "larger than the data.*X-Y"),
        ("tiny", {"alpha": 1.0}, "larger than the data.*X-X"),
        (None, {"dataset_temperature": 0}, "dataset_temperature"),
        (None, {"languages": ["en", "xx"]}, "do not occur"),
        ("duplicate", {}, "one row per combination"),
        ("empty", {}, "empty"),
    ],
)
def test_bad_input_raises_clear_value_error(mlqa, change, kwargs, match):
    df = mlqa
    if change == "drop_dataset":
        df = mlqa.drop(columns="dataset")
    elif change == "tiny":
        df = make_pairs(10, "tiny", 3, "s")
    elif change == "duplicate":
        df = pd.concat([mlqa, mlqa.iloc[:1]], ignore_index=True)
    elif change == "empty":
        df = mlqa.iloc[:0]
    args = {"batch_size": B, "alpha": 0.5, **kwargs}
    with pytest.raises(ValueError, match=match):
        HybridBatchSampler(df, args.pop("batch_size"), args.pop("alpha"), **args)
