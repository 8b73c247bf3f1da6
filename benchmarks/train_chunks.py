"""Benchmark: a training batch's sides run in length-sorted chunks (the kit's step) against one
padded batch per side (what sentence-transformers and a plain loop do).

Same model, same MLQA-R training pairs and the same hybrid batches, the quick recipe at this
machine's precision. Each setting is timed over ``--steps`` steps after ``--warmup`` untimed
ones, in two rounds (A B ..., then reversed) so that drift falls on every setting alike; pairs/s is
the median of the rounds. Then the loss of the first 20 steps and the development-set scores after
``--dev-steps`` steps are compared between chunked and whole-batch padding (they differ by
the dropout masks, drawn per chunk). Prints JSON (committed as ``benchmarks/results/train_chunks.json``). Run
it alone on the machine:

    .venv/bin/python benchmarks/train_chunks.py [--steps 10] [--warmup 2] [--dev-steps 100]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import alternating_rounds, dev_run, kit_times, quick_setup  # noqa: E402  (train_step.py's loop)

from xlir_utils import environment  # noqa: E402
from xlir_utils.encoders import load_encoder  # noqa: E402
from xlir_utils.training import resolve_train_precision, step  # noqa: E402


def with_rows(train, rows: int):
    """The recipe with ``rows`` rows per chunk (0: one padded batch per side)."""
    return dataclasses.replace(train, chunk_rows=rows)


def padded_tokens(model, pairs, batches, n: int, rows: int, max_length: int) -> int:
    """Tokens the encoder computes over ``n`` batches (each text with its side's prompt, truncated
    to ``max_length`` as training does), padding included."""
    total = 0
    for b in batches[:n]:
        for col in ("query", "passage"):
            texts = [model.prompts.get(col, "") + t for t in pairs[col].to_numpy()[np.asarray(b.indices)]]
            lengths = [len(ids) for ids in model.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
            for chunk in step.length_chunks(lengths, rows):
                total += len(chunk) * max(lengths[i] for i in chunk)
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--dev-steps", type=int, default=100)
    args = ap.parse_args()
    n = args.warmup + args.steps
    profile, train, pairs, dev, batches = quick_setup(max(n, 20))
    precision = resolve_train_precision(train.precision)
    settings = {"one padded batch per side (plain)": 0, f"length-sorted chunks of {train.chunk_rows} (kit)": train.chunk_rows}
    names = list(settings)
    load_before = os.getloadavg()
    rounds = alternating_rounds({name: (lambda rows=rows: kit_times(
        profile, with_rows(train, rows), pairs, batches, args.warmup, args.steps, precision, train.freeze_layers)[0])
        for name, rows in settings.items()})
    pairs_per_s = {k: train.batch_size * args.steps / statistics.median(v) for k, v in rounds.items()}
    plain, kit = names
    model = load_encoder(profile.encoder)
    tokens = {name: padded_tokens(model, pairs, batches, n, rows, train.max_seq_length)
              for name, rows in settings.items()}
    losses = {name: kit_times(profile, with_rows(train, rows), pairs, batches, 0, 20, precision, train.freeze_layers)[1]
              for name, rows in settings.items()}
    devs = {name: dev_run(profile, with_rows(train, rows), pairs, dev, args.dev_steps, precision)
            for name, rows in settings.items()}
    print(json.dumps({
        "claim": "length-sorted chunks train the same recipe faster (the dev scores of both after the same steps are shown)",
        "model": profile.encoder, "batch_size": train.batch_size, "max_seq_length": train.max_seq_length,
        "precision": precision, "frozen_layers": train.freeze_layers,
        "pairs": "MLQA-R training part (quick profile), the kit's hybrid batches in the same order for every setting",
        "timed_steps": args.steps, "warmup_steps": args.warmup, "rounds": 2,
        "seconds_per_round": rounds, "pairs_per_second": pairs_per_s,
        "speedup": pairs_per_s[kit] / pairs_per_s[plain],
        "tokens_computed": tokens, "token_ratio": tokens[kit] / tokens[plain],
        "loss_first_20_steps": {k: v.tolist() for k, v in losses.items()},
        "loss_max_abs_diff": float(np.abs(losses[kit] - losses[plain]).max()),
        "dev_after_steps": args.dev_steps, "dev": devs,
        "dev_map_max_abs_diff": max(abs(devs[kit][k] - devs[plain][k]) for k in ("dev_mono", "dev_cross", "dev_multi")),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "processor": environment.cpu_name(),
                    "load_average_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]},
    }, indent=2))


if __name__ == "__main__":
    main()
