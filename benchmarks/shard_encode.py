"""Benchmark: sharded corpus encoding on 1 and 2 CPU processes against sentence-transformers'
multi-process pool, in one run.

The same texts (XQuAD-R candidate sentences of all 11 languages), the same model
(``e5-small-offline``), passage prompt. Variants: the kit's ``python -m xlir_utils.shard_encode``
with 1 process (2 threads) and with 2 processes under torchrun (1 thread each), and plain
``SentenceTransformer.encode`` with a 2-worker CPU pool (``start_multi_process_pool``, 1 thread
per worker), the tool a user would otherwise pick. The JSON reports texts/s of the encoding
itself (model loading excluded: the kit's summary times its shards; the pool is timed around
``encode`` after a warm-up call), whether the kit's 1- and 2-process shards are identical, and the minimum cosine
between the kit's and sentence-transformers' embeddings of each text.

    python benchmarks/shard_encode.py [--n-texts 4000] [--shard-size 500]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from xlir_utils import large_scale as L
from xlir_utils.data import load_retrieval_set
from xlir_utils.encoders.registry import load_encoder


def texts(n: int) -> list[str]:
    sents = load_retrieval_set("xquad-r").candidates.sentence
    step = max(1, len(sents) // n)
    return [s.replace("\n", " ") for s in sents.iloc[::step].head(n)]


def kit(nproc: int, threads: int, corpus: Path, out: Path, shard_size: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "XLIR_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m",
           "xlir_utils.shard_encode", "--model", "e5-small-offline", "--texts", str(corpus), "--out", str(out),
           "--shard-size", str(shard_size), "--index", "flat"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(res.stderr[-3000:])
    return json.loads([line for line in res.stdout.splitlines() if line.startswith("{")][-1])


def st_pool(sentences: list[str]) -> tuple[float, np.ndarray]:
    os.environ["OMP_NUM_THREADS"] = "1"  # each worker one thread (inherited by the spawned workers)
    model = load_encoder("e5-small-offline", device="cpu")
    pool = model.start_multi_process_pool(["cpu", "cpu"])
    try:
        model.encode(sentences[:64], prompt_name="passage", pool=pool, batch_size=32)  # warm-up: workers loaded
        t0 = time.perf_counter()
        emb = model.encode(sentences, prompt_name="passage", pool=pool, batch_size=32, normalize_embeddings=True)
        seconds = time.perf_counter() - t0
    finally:
        model.stop_multi_process_pool(pool)
    return len(sentences) / seconds, np.asarray(emb, dtype=np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-texts", type=int, default=4000)
    ap.add_argument("--shard-size", type=int, default=500)
    args = ap.parse_args()
    sentences = texts(args.n_texts)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = tmp / "corpus.txt"
        corpus.write_text("\n".join(sentences), encoding="utf-8")
        one = kit(1, 2, corpus, tmp / "one", args.shard_size)
        two = kit(2, 1, corpus, tmp / "two", args.shard_size)
        a = L.load_shards(tmp / "one", len(sentences), args.shard_size)
        b = L.load_shards(tmp / "two", len(sentences), args.shard_size)
    st_rate, st_emb = st_pool(sentences)
    cos = np.sum(a * st_emb, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(st_emb, axis=1))
    print(json.dumps({
        "model": "e5-small-offline", "texts": len(sentences), "source": "XQuAD-R candidate sentences, 11 languages",
        "shard_size": args.shard_size,
        "kit_1_process_2_threads_texts_per_s": one["texts_per_second"],
        "kit_2_processes_1_thread_texts_per_s": two["texts_per_second"],
        "sentence_transformers_pool_2_workers_texts_per_s": round(st_rate, 1),
        "kit_2_processes_over_st_pool": round(two["texts_per_second"] / st_rate, 3),
        "kit_2_processes_over_1": round(two["texts_per_second"] / one["texts_per_second"], 3),
        "kit_1_and_2_processes_identical": bool(np.array_equal(a, b)),
        "min_cosine_kit_vs_st": float(cos.min()),
        "cpu_count": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
