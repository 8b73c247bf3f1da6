"""Resumable sharded encoding of a large corpus (notebook 04 §9; ``python -m xlir_utils.shard_encode``).

A corpus is encoded in shards of ``shard_size`` texts, each stored in the kit's keyed array store
(:func:`xlir_utils.keyed_arrays.write_keyed_arrays`: atomic, keyed by the system's fingerprint and the
shard's texts, its checksum verified on every read) under the cache, so an interrupted run resumes
at the first missing shard. With ``rank``/``world`` a process encodes every ``world``-th shard:
several processes (or GPUs) split a corpus.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import paths
from ..keyed_arrays import read_keyed_arrays, text_digest, write_keyed_arrays
from ..training import distributed as D

TextsEncodeFn = Callable[[Sequence[str]], np.ndarray]  # texts -> L2-normalised rows


def shard_folder(profile_name: str, system_label: str, corpus: str) -> Path:
    """Where one system's shards of one corpus live (under the cache; notebook 04 §9)."""
    return paths.cache_dir() / "shards" / profile_name / system_label / corpus


def shard_path(folder: Path, index: int) -> Path:
    """The file of shard ``index`` (0-based) in ``folder``."""
    return folder / f"shard-{index:06d}.npz"


def shard_key(fingerprint: str, start: int, texts: Sequence[str]) -> str:
    """The key of the shard that starts at corpus position ``start`` and holds ``texts``."""
    return f"{fingerprint}|{start}|{len(texts)}|{text_digest(texts, 16)}"


def encode_shards(encode: TextsEncodeFn, texts: Sequence[str], folder: Path, *, fingerprint: str, shard_size: int = 50_000,
                  rank: int = 0, world: int = 1, show_progress: bool = True) -> list[Path]:
    """Encode ``texts`` in shards (this process: shards ``rank``, ``rank + world``, ...), skipping
    every shard already stored for this fingerprint and these texts (notebook 04 §9); returns this
    process's shard paths. A damaged shard is encoded again (with a warning naming it)."""
    folder.mkdir(parents=True, exist_ok=True)
    starts = list(range(0, len(texts), shard_size))[rank::world]
    written = []
    for start in tqdm(starts, desc=f"shards of {folder.name}", disable=not show_progress):
        chunk = list(texts[start:start + shard_size])
        path = shard_path(folder, start // shard_size)
        key = shard_key(fingerprint, start, chunk)
        if read_keyed_arrays(path, key) is None:
            emb = np.ascontiguousarray(encode(chunk), dtype=np.float32)
            write_keyed_arrays(path, key, embeddings=emb)
        written.append(path)
    return written


def load_shards(folder: Path, n_texts: int, shard_size: int) -> np.ndarray:
    """Every shard of a corpus, in order, as one array, each verified against its checksum
    (notebook 04 §9; a missing or damaged shard raises, naming it; ``encode_shards`` again
    re-encodes it)."""
    parts = []
    for i, start in enumerate(range(0, n_texts, shard_size)):
        path = shard_path(folder, i)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: encode_shards has not finished this corpus (run it again)")
        stored = read_keyed_arrays(path, None)
        emb = None if stored is None else stored.get("embeddings")
        expected = min(shard_size, n_texts - start)
        if emb is None or len(emb) != expected:
            raise ValueError(f"{path} is damaged or holds {0 if emb is None else len(emb)} rows, not {expected}: "
                             "run encode_shards again, it re-encodes the shard")
        parts.append(emb)
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def encode_corpus(encode: TextsEncodeFn, texts: Sequence[str], folder: Path, *, fingerprint: str,
                  shard_size: int = 50_000, show_progress: bool = True) -> np.ndarray:
    """Encode a corpus in resumable shards across the processes of a ``torchrun`` job (each takes
    every ``world``-th shard; one process takes all), wait for all, and return every embedding in
    corpus order (verified shards; README, "Scaling out"; notebook 04 §9 runs one process)."""
    ctx = D.context()
    encode_shards(encode, texts, folder, fingerprint=fingerprint, shard_size=shard_size, rank=ctx.rank,
                  world=ctx.world, show_progress=show_progress and ctx.is_main)
    D.barrier(ctx)
    return load_shards(folder, len(texts), shard_size)
