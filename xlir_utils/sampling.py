"""Batch sampling for hybrid batch training (paper §1; notebook 02).

Each batch is a list of row positions into the *pairs table* (one row per
``(question_id, query_lang, passage_lang)``, columns :data:`REQUIRED_COLUMNS`):

* **X-X** (kind :data:`XX_KIND`): one language drawn uniformly among the training languages that
  still have at least ``batch_size`` unused items in the batch's dataset; every row is the
  X-X pair (query and passage in that language) of its item.
* **X-Y** (kind :data:`XY_KIND`): every row has ``query_lang != passage_lang``; for each item the
  ordered language pair is drawn uniformly among the X-Y rows the item has.
* **Hybrid(alpha)**: per batch, X-X with probability ``alpha``, else X-Y
  (``alpha=1`` is X-X, ``alpha=0`` is X-Y).
* **Several datasets**: the dataset of each batch is drawn with ``p ∝ n_items ** (1 / T)``
  (``T = dataset_temperature``; 1 = proportional to size, larger = flatter).

An *item* is a ``(dataset, question_id)``. No batch holds two rows of one item, so a
translation of the positive is never scored as an in-batch negative.

**Epoch.** Within an epoch each item is used at most once (in one batch, as one row).
Batches are drawn one after another -- dataset, then kind, then language, then items
uniformly among that dataset's unused items that can serve the batch -- and the epoch
ends at the first batch that cannot be filled as drawn: an X-X draw when no language of
the dataset has ``batch_size`` unused items left, or an X-Y draw when fewer than
``batch_size`` unused items with an X-Y row remain. A language with fewer than
``batch_size`` unused items simply leaves the X-X language draw for the rest of the epoch.
Items left over return in the next epoch. Batches are always full (``drop_last`` is
ignored). The whole epoch is planned up front from ``(seed, epoch)``, so ``len()`` is exact
and :meth:`HybridBatchSampler.plan` shows what an epoch will yield.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("question_id", "query_lang", "query", "passage_lang", "passage", "dataset")
# A batch's kind as plans, sampler histories and training logs (``train_log.csv``) store it:
# "mono" is an X-X batch, "cross" an X-Y batch (the values every stored log has).
XX_KIND, XY_KIND = "mono", "cross"
BATCH_KINDS = (XX_KIND, XY_KIND)


@dataclass(frozen=True)
class BatchInfo:
    """One planned batch: where it sits, what kind it is, and its row positions."""

    epoch: int
    batch: int  # position within the epoch
    dataset: str
    kind: str  # XX_KIND ("mono") or XY_KIND ("cross")
    lang: str  # the X-X language; "" for an X-Y batch
    lang_pairs: str  # sorted distinct "query>passage" language pairs, comma-separated
    indices: tuple[int, ...]

    def record(self) -> dict[str, Any]:
        """A flat dict for logging (CSV-friendly; no row indices)."""
        d = asdict(self)
        d["n_rows"] = len(d.pop("indices"))
        return d


@dataclass
class _Pool:
    """Static per-dataset index: items, their X-X rows and X-Y rows."""

    name: str
    n_items: int
    xx_rows: np.ndarray  # (n_items, n_langs) row position of the (l, l) pair, -1 if absent
    has_xx: np.ndarray  # (n_items, n_langs) bool
    xy_ptr: np.ndarray  # (n_items + 1,) CSR offsets into xy_rows
    xy_rows: np.ndarray  # row positions of X-Y pairs, grouped by item
    xy_count: np.ndarray  # (n_items,)


def _check_pairs(pairs: Any) -> pd.DataFrame:
    if not isinstance(pairs, pd.DataFrame):
        raise ValueError(f"pairs must be a pandas DataFrame, got {type(pairs).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in pairs.columns]
    if missing:
        raise ValueError(
            f"pairs table lacks column(s) {missing}; expected {list(REQUIRED_COLUMNS)} "
            "(build it with xlir_utils.data.pairs)"
        )
    if len(pairs) == 0:
        raise ValueError("pairs table is empty")
    for col in ("question_id", "query_lang", "passage_lang", "dataset"):
        if pairs[col].isna().any():
            raise ValueError(f"pairs column {col!r} has {int(pairs[col].isna().sum())} missing value(s)")
    key = ["dataset", "question_id", "query_lang", "passage_lang"]
    dup = pairs.duplicated(key, keep=False)
    if dup.any():
        ex = pairs.loc[dup, key].iloc[0].to_dict()
        raise ValueError(
            f"pairs table has {int(dup.sum())} rows sharing (dataset, question_id, query_lang, passage_lang), "
            f"e.g. {ex}; expected one row per combination"
        )
    return pairs


def _check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, Real) or not (0.0 <= float(alpha) <= 1.0):
        raise ValueError(f"alpha (probability of an X-X batch) must be in [0, 1], got {alpha!r}")
    return float(alpha)


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


class HybridBatchSampler(Sampler[list[int]]):
    """Hybrid X-X / X-Y batch sampler over a pairs table (see the module docstring).

    Iterating yields lists of row positions (``iloc``) into ``pairs``; the same positions
    index a :class:`datasets.Dataset` built from ``pairs`` in the same row order.
    Deterministic for ``(seed, epoch)``; :meth:`set_epoch` picks the epoch, and a complete
    pass advances it by one. Every yielded batch is appended to :attr:`history` (a list of
    :meth:`BatchInfo.record` dicts) and passed to ``on_batch`` if given.

    Args:
        pairs: the pairs table (:data:`REQUIRED_COLUMNS`).
        batch_size: rows per batch (all batches are full).
        alpha: probability of an X-X batch (1 = X-X only, 0 = X-Y only).
        seed: base seed; epoch ``e`` uses ``SeedSequence([seed, e])``.
        languages: training languages (rows whose query or passage language is outside are
            ignored); default every language in ``pairs``.
        dataset_temperature: ``T`` in ``p(dataset) ∝ n_items ** (1 / T)``.
        on_batch: called with each yielded batch's record (e.g. a CSV logger).
    """

    def __init__(
        self,
        pairs: pd.DataFrame,
        batch_size: int,
        alpha: float = 0.5,
        *,
        seed: int = 0,
        languages: Sequence[str] | None = None,
        dataset_temperature: float = 1.0,
        on_batch: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        pairs = _check_pairs(pairs)
        self.batch_size = _check_batch_size(batch_size)
        self.alpha = _check_alpha(alpha)
        if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        if isinstance(dataset_temperature, bool) or not isinstance(dataset_temperature, Real) or not (
            math.isfinite(dataset_temperature) and dataset_temperature > 0
        ):
            raise ValueError(f"dataset_temperature must be a finite number > 0, got {dataset_temperature!r}")
        self.dataset_temperature = float(dataset_temperature)
        self.on_batch = on_batch

        present = set(pairs["query_lang"].astype(str)) | set(pairs["passage_lang"].astype(str))
        if languages is None:
            langs = sorted(present)
        else:
            langs = sorted({str(lang) for lang in languages})
            unknown = sorted(set(langs) - present)
            if not langs or unknown:
                raise ValueError(
                    f"languages {unknown or list(languages)} do not occur in the pairs table "
                    f"(it has {sorted(present)})"
                )
        self.languages: tuple[str, ...] = tuple(langs)
        self.n_rows = len(pairs)
        self._pools = self._index(pairs)
        self.datasets: tuple[str, ...] = tuple(p.name for p in self._pools)
        sizes = np.array([p.n_items for p in self._pools], dtype=float)
        w = sizes ** (1.0 / self.dataset_temperature)
        self.dataset_probs: dict[str, float] = dict(zip(self.datasets, (w / w.sum()).tolist()))
        self._probs = w / w.sum()
        self._check_feasible()

        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self._plans: dict[int, list[BatchInfo]] = {}

    # ------------------------------------------------------------------ index
    def _index(self, pairs: pd.DataFrame) -> list[_Pool]:
        lang_code = {lang: i for i, lang in enumerate(self.languages)}
        ql = pairs["query_lang"].astype(str).map(lang_code).fillna(-1).to_numpy(dtype=np.int64)
        pl = pairs["passage_lang"].astype(str).map(lang_code).fillna(-1).to_numpy(dtype=np.int64)
        self._ql, self._pl = ql, pl
        keep = (ql >= 0) & (pl >= 0)
        ds = pairs["dataset"].astype(str).to_numpy()
        qid = pairs["question_id"].astype(str).to_numpy()
        n_langs = len(self.languages)
        pools = []
        for name in sorted(set(ds[keep])):
            rows = np.flatnonzero(keep & (ds == name))
            item, _ = pd.factorize(qid[rows], sort=True)
            n_items = int(item.max()) + 1
            xx_rows = np.full((n_items, n_langs), -1, dtype=np.int64)
            is_xx = ql[rows] == pl[rows]
            xx_rows[item[is_xx], ql[rows][is_xx]] = rows[is_xx]
            y_rows, y_item = rows[~is_xx], item[~is_xx]
            order = np.lexsort((y_rows, y_item))
            count = np.bincount(y_item, minlength=n_items)
            pools.append(
                _Pool(
                    name=name,
                    n_items=n_items,
                    xx_rows=xx_rows,
                    has_xx=xx_rows >= 0,
                    xy_ptr=np.concatenate([[0], np.cumsum(count)]),
                    xy_rows=y_rows[order],
                    xy_count=count,
                )
            )
        if not pools:
            raise ValueError(f"no rows of the pairs table have both languages in {list(self.languages)}")
        return pools

    def _check_feasible(self) -> None:
        b = self.batch_size
        for pool in self._pools:
            if self.alpha > 0:
                per_lang = pool.has_xx.sum(axis=0)
                best = int(per_lang.argmax())
                if per_lang[best] < b:
                    raise ValueError(
                        f"batch_size {b} is larger than the data: dataset {pool.name!r} has at most "
                        f"{int(per_lang[best])} items with an X-X pair in one language "
                        f"({self.languages[best]}), so no X-X batch can be filled (alpha={self.alpha})"
                    )
            if self.alpha < 1:
                n_xy = int((pool.xy_count > 0).sum())
                if n_xy < b:
                    raise ValueError(
                        f"batch_size {b} is larger than the data: dataset {pool.name!r} has {n_xy} items "
                        f"with an X-Y pair, so no X-Y batch can be filled (alpha={self.alpha})"
                    )

    # ------------------------------------------------------------------ planning
    def plan(self, epoch: int | None = None) -> list[BatchInfo]:
        """The batches epoch ``epoch`` (default: the current one) yields, computed deterministically."""
        epoch = self.epoch if epoch is None else int(epoch)
        if epoch not in self._plans:
            if len(self._plans) >= 2:
                self._plans.pop(next(iter(self._plans)))
            self._plans[epoch] = self._make_plan(epoch)
        return self._plans[epoch]

    def _make_plan(self, epoch: int) -> list[BatchInfo]:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch]))
        b, n_langs = self.batch_size, len(self.languages)
        states = []
        for pool in self._pools:  # fixed order of rng use: deterministic
            lang_perm = [rng.permutation(np.flatnonzero(pool.has_xx[:, lang])) for lang in range(n_langs)]
            xy_perm = rng.permutation(np.flatnonzero(pool.xy_count > 0))
            states.append(
                {
                    "used": np.zeros(pool.n_items, dtype=bool),
                    "lang_perm": lang_perm,
                    "lang_ptr": [0] * n_langs,
                    "lang_left": pool.has_xx.sum(axis=0),
                    "xy_perm": xy_perm,
                    "xy_ptr": 0,
                    "xy_left": len(xy_perm),
                }
            )

        def take(st: dict, perm: np.ndarray, ptr: int) -> tuple[np.ndarray, int]:
            # next b unused items of a random permutation = b items uniform among the unused ones
            used, out = st["used"], []
            while len(out) < b:
                it = perm[ptr]
                ptr += 1
                if not used[it]:
                    out.append(it)
            return np.asarray(out, dtype=np.int64), ptr

        batches: list[BatchInfo] = []
        n_ds = len(self._pools)
        while True:
            d = int(rng.choice(n_ds, p=self._probs)) if n_ds > 1 else 0
            xx = bool(rng.random() < self.alpha)
            pool, st = self._pools[d], states[d]
            if xx:
                eligible = np.flatnonzero(st["lang_left"] >= b)
                if eligible.size == 0:
                    break
                lang = int(eligible[rng.integers(eligible.size)])
                items, st["lang_ptr"][lang] = take(st, st["lang_perm"][lang], st["lang_ptr"][lang])
                rows = pool.xx_rows[items, lang]
            else:
                if st["xy_left"] < b:
                    break
                items, st["xy_ptr"] = take(st, st["xy_perm"], st["xy_ptr"])
                offs = rng.integers(0, pool.xy_count[items])
                rows = pool.xy_rows[pool.xy_ptr[items] + offs]
            st["used"][items] = True
            st["lang_left"] = st["lang_left"] - pool.has_xx[items].sum(axis=0)
            st["xy_left"] -= int((pool.xy_count[items] > 0).sum())
            codes = np.unique(self._ql[rows] * n_langs + self._pl[rows])
            batches.append(
                BatchInfo(
                    epoch=epoch,
                    batch=len(batches),
                    dataset=pool.name,
                    kind=XX_KIND if xx else XY_KIND,
                    lang=self.languages[lang] if xx else "",
                    lang_pairs=",".join(f"{self.languages[c // n_langs]}>{self.languages[c % n_langs]}" for c in codes),
                    indices=tuple(int(r) for r in rows),
                )
            )
        return batches

    # ------------------------------------------------------------------ sampler protocol
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose (deterministic) plan the next iteration yields."""
        if isinstance(epoch, bool) or not isinstance(epoch, Integral) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Number of batches in the current epoch (exact)."""
        return len(self.plan(self.epoch))

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch
        for info in self.plan(epoch):
            rec = info.record()
            self.history.append(rec)
            if self.on_batch is not None:
                self.on_batch(rec)
            yield list(info.indices)
        if self.epoch == epoch:  # a complete pass moves on to the next epoch
            self.epoch = epoch + 1

    def __repr__(self) -> str:
        return (
            f"HybridBatchSampler(batch_size={self.batch_size}, alpha={self.alpha}, seed={self.seed}, "
            f"languages={list(self.languages)}, datasets={self.dataset_probs}, epoch={self.epoch})"
        )


def xx_sampler(pairs: pd.DataFrame, batch_size: int, **kwargs: Any) -> HybridBatchSampler:
    """X-X (monolingual) batching: :class:`HybridBatchSampler` with ``alpha=1`` (notebook 02 §2)."""
    return HybridBatchSampler(pairs, batch_size, alpha=1.0, **kwargs)


def xy_sampler(pairs: pd.DataFrame, batch_size: int, **kwargs: Any) -> HybridBatchSampler:
    """X-Y (cross-lingual) batching: :class:`HybridBatchSampler` with ``alpha=0`` (notebook 02 §2)."""
    return HybridBatchSampler(pairs, batch_size, alpha=0.0, **kwargs)


def sampling_alpha(sampling: str, alpha: float = 0.5) -> float:
    """The alpha of a named strategy: ``"x-x"`` → 1, ``"x-y"`` → 0, ``"hybrid"`` → ``alpha``
    (any case; the older names ``"mono"`` and ``"cross"`` are accepted for X-X and X-Y)."""
    key = sampling.strip().lower().replace("_", "-")
    if key in ("x-x", "xx", "mono"):
        return 1.0
    if key in ("x-y", "xy", "cross"):
        return 0.0
    if key == "hybrid":
        return _check_alpha(alpha)
    raise ValueError(f"unknown sampling {sampling!r}; choose 'x-x', 'x-y' or 'hybrid'")


def describe_batch(pairs_df: pd.DataFrame, indices: Sequence[int], width: int = 60) -> pd.DataFrame:
    """A small view of one batch: dataset, question_id, languages and truncated texts, by row
    position (notebook 02 §2)."""
    idx = [int(i) for i in indices]
    bad = [i for i in idx if not 0 <= i < len(pairs_df)]
    if bad:
        raise ValueError(f"row positions {bad[:5]} are outside the pairs table (0..{len(pairs_df) - 1})")

    def cut(s: Any) -> str:
        s = str(s)
        return s if len(s) <= width else s[: width - 1] + "…"

    cols = [c for c in ("dataset", "question_id", "query_lang", "passage_lang") if c in pairs_df.columns]
    out = pairs_df.iloc[idx][cols].copy()
    for col in ("query", "passage"):
        if col in pairs_df.columns:
            out[col] = pairs_df[col].iloc[idx].map(cut).to_numpy()
    out.index = pd.Index(idx, name="row")
    return out


__all__ = [
    "BATCH_KINDS",
    "REQUIRED_COLUMNS",
    "XX_KIND",
    "XY_KIND",
    "BatchInfo",
    "HybridBatchSampler",
    "describe_batch",
    "sampling_alpha",
    "xx_sampler",
    "xy_sampler",
]
