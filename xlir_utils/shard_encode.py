"""Encode a large corpus in resumable shards on one process or many, then index it with FAISS
(README, "Scaling out"; the ``paper`` profile's Mewsli-X and MIRACL pools use the same functions).

::

    python -m xlir_utils.shard_encode --model e5-small-offline --texts corpus.txt --out shards/
    torchrun --standalone --nproc_per_node 4 -m xlir_utils.shard_encode --model xlm-roberta-base \\
        --texts corpus.jsonl --out shards/ --index hnsw

Each process encodes every ``world``-th shard with the kit's token-budget :func:`encode` (on its
GPU when there is one); shards are written atomically, keyed by the model's fingerprint and the
shard's texts, verified on read, and skipped when present, so a killed job resumes. Rank 0 then
merges them into one index: ``flat`` (exact inner product on normalised vectors), or ``ivf`` /
``hnsw`` for corpora that do not fit, with their recall@100 against flat measured on a sample.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from . import large_scale as L
from .cli import run
from .data.fetch import DataError
from .data.jsonl import json_lines
from .encoders.encode import embedding_signature, encode
from .encoders.registry import load_encoder
from .io_utils import atomic_write_json
from .training import distributed as D


def read_texts(path: Path) -> list[str]:
    """Texts, one per line (``.txt``) or the ``text`` field of each JSON line (``.jsonl``); a
    missing file or a bad JSON line raises a DataError naming the file and the line."""
    if not path.is_file():
        raise DataError(f"--texts {path}: no such file (one text per line, or JSON lines with a 'text' field)")
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix != ".jsonl":
        return [line for line in lines if line.strip()]
    texts = []
    for n, record in json_lines(path, "a JSON object with a 'text' field"):
        if not isinstance(record.get("text"), str):
            raise DataError(f"--texts {path}, line {n}: expected a JSON object with a 'text' string, "
                            f"got keys {sorted(record)[:5]}")
        texts.append(record["text"])
    return texts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``--help`` lists it)."""
    p = argparse.ArgumentParser(prog="python -m xlir_utils.shard_encode", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a name of the kit (e5-small-offline), a hub id or a model folder")
    p.add_argument("--texts", type=Path, required=True, help=".txt (one per line) or .jsonl ('text' field)")
    p.add_argument("--out", type=Path, required=True, help="folder for the shards and the index")
    p.add_argument("--kind", default="passage", choices=("query", "passage"), help="which prompt the model adds")
    p.add_argument("--shard-size", type=int, default=50_000)
    p.add_argument("--batch-tokens", type=int, default=8192, help="padded tokens per encoding batch")
    p.add_argument("--index", default="flat", choices=("flat", "ivf", "hnsw", "none"))
    p.add_argument("--recall-sample", type=int, default=1000, help="queries (corpus rows) for an approximate index's recall")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Encode (every process), merge and index (rank 0); prints a JSON summary on rank 0
    (notebook 04 §9 uses the same functions; the command line runs it through :func:`xlir_utils.cli.run`)."""
    args = parse_args(argv)
    texts = read_texts(args.texts)
    ctx = D.init_from_env()
    device = f"cuda:{ctx.local_rank}" if torch.cuda.is_available() else "cpu"
    model = load_encoder(args.model, device=device)
    fingerprint = f"{embedding_signature(model)}|{args.kind}|bt{args.batch_tokens}"

    def encode_chunk(chunk):
        return encode(model, list(chunk), args.kind, batch_tokens=args.batch_tokens, cache=False, show_progress=False)

    t0 = time.perf_counter()
    vectors = L.encode_corpus(encode_chunk, texts, args.out, fingerprint=fingerprint, shard_size=args.shard_size,
                              show_progress=ctx.is_main)
    seconds = time.perf_counter() - t0
    summary = {"texts": len(texts), "dim": int(vectors.shape[1]), "processes": ctx.world,
               "shards": -(-len(texts) // args.shard_size), "encode_seconds": round(seconds, 3),
               "texts_per_second": round(len(texts) / seconds, 1), "index": args.index}
    if ctx.is_main and args.index != "none":
        index = L.build_index(vectors, args.index)
        if args.index != "flat":
            sample = vectors[np.random.default_rng(13).choice(len(vectors), min(args.recall_sample, len(vectors)),
                                                              replace=False)]
            summary["recall@100_vs_flat"] = L.recall_against_flat(index, L.build_index(vectors, "flat"), sample,
                                                                  k=min(100, len(vectors)))
        target = args.out / f"index-{args.index}.faiss"
        L.write_index(index, target)  # atomic: a reader sees the old index or the new one
        summary["index_file"] = str(target)
    if ctx.is_main:
        atomic_write_json(summary, args.out / "summary.json")
        print(json.dumps(summary))
    D.barrier(ctx)
    if ctx.distributed:
        dist.destroy_process_group()
    return summary


if __name__ == "__main__":
    sys.exit(run(main))
