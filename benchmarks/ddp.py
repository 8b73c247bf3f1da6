"""Benchmark: hybrid-batch training on 2 CPU processes (torchrun, gloo) against 1, same global batch.

The real model (``e5-small-offline``, a copy with dropout off so that the two runs can agree
exactly), real MLQA-R pairs of the smoke profile, the quick recipe's batch (32) and length (128),
exact fp32 (bf16 autocast rounds differently per shard size), a few steps. One process uses both
cores (2 threads), each of the two processes one. The JSON reports steps/s (from the runs' own
per-step seconds, so start-up is excluded), the ratio, and the largest loss difference per step.

    python benchmarks/ddp.py [--steps 12] [--batch 32] [--max-len 128]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from xlir_utils.encoders.registry import load_encoder


def no_dropout_copy(folder: Path) -> Path:
    """The offline encoder saved with dropout 0 (same weights)."""
    model = load_encoder("e5-small-offline", device="cpu")
    cfg = model[0].auto_model.config
    cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0.0
    model.save(str(folder))
    return folder


def launch(nproc: int, threads: int, model: Path, runs: Path, recipe: dict) -> pd.DataFrame:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "XLIR_THREADS": str(threads), "XLIR_PROFILE": "smoke", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "xlir_utils.training", "--profile", "smoke", "--sampling", "hybrid", "--seed", "13",
           "--encoder", str(model), "--runs-root", str(runs), "--train", json.dumps(recipe),
           "--profile-overrides", json.dumps({"train_articles": 12})]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return pd.read_csv(runs / "full-hybrid-s13" / "train_log.csv")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-len", type=int, default=128)
    args = ap.parse_args()
    recipe = {"steps": args.steps, "batch_size": args.batch, "max_seq_length": args.max_len, "precision": "fp32",
              "freeze_layers": 6, "lr": 3e-5, "temperature": 0.02, "schedule": "constant", "warmup_steps": 10,
              "checkpoint_every": 1000}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = no_dropout_copy(tmp / "model")
        one = launch(1, 2, model, tmp / "one", recipe)
        two = launch(2, 1, model, tmp / "two", recipe)
    skip = 2  # the first steps include lazy initialisation
    sps1 = (len(one) - skip) / one.seconds.iloc[skip:].sum()
    sps2 = (len(two) - skip) / two.seconds.iloc[skip:].sum()
    print(json.dumps({
        "model": "e5-small-offline (dropout off)", "pairs": "MLQA-R, smoke profile's articles", "precision": "fp32",
        "global_batch": args.batch, "max_seq_length": args.max_len, "steps": args.steps, "freeze_layers": 6,
        "one_process_2_threads_steps_per_s": round(sps1, 4), "two_processes_1_thread_steps_per_s": round(sps2, 4),
        "ratio_two_over_one": round(sps2 / sps1, 3),
        "max_abs_loss_difference": float((one.loss - two.loss).abs().max()),
        "same_batch_kinds": bool(one[["kind", "lang"]].equals(two[["kind", "lang"]])),
        "cpu_count": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
