"""Benchmark: the kit's training step against plain ``SentenceTransformerTrainer`` +
``MultipleNegativesRankingLoss`` (scale 20 = τ 0.05), and bf16 autocast against exact fp32.

Same model (``e5-small-offline``), same MLQA-R training pairs *and the same batches* (the kit's
hybrid plan, fed to the trainer in order), same batch size and maximum length. Each variant is
timed over ``--steps`` steps after ``--warmup`` untimed ones, in two rounds (A B C ..., then in
reverse order) so that drift on a shared machine falls on every variant alike; pairs/s is the
median of the two rounds. Then, with the quick recipe's settings, the loss of the first 20 steps
under bf16 autocast is compared with the exact fp32 step, and two ``--dev-steps``-step runs (bf16,
fp32) are scored on the development set (mlqa-r-dev). Prints JSON (committed as
``benchmarks/results/train_step.json``). Run it alone on the machine:

    .venv/bin/python benchmarks/train_step.py [--steps 12] [--warmup 3] [--dev-steps 100]
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from torch.utils.data import BatchSampler, SequentialSampler
from transformers import TrainerCallback

from xlir_utils import config, environment, paths
from xlir_utils.data import evaluation_sets, retrieval_set, training_pairs
from xlir_utils.encoders import load_encoder
from xlir_utils.recipe_study import dev_scores
from xlir_utils.sampling import HybridBatchSampler
from xlir_utils.training import make_spec, resolve_train_precision, set_trainable, train_run
from xlir_utils.training.loop import planned_batches

if not os.environ.get("XLIR_DATA_DIR", "").strip():
    os.environ["XLIR_DATA_DIR"] = str((paths.project_root().parent / "shared" / "data").resolve())


def kit_times(profile, train, pairs, batches, n_warm: int, n_time: int, precision: str, freeze_layers: int):
    """Seconds per step (the kit's own per-step log) and the losses of the kit's loop."""
    cfg = dataclasses.replace(train, steps=n_warm + n_time, precision=precision, freeze_layers=freeze_layers,
                              checkpoint_every=10_000)
    model = load_encoder(profile.encoder)
    model.max_seq_length = cfg.max_seq_length
    set_trainable(model, cfg.freeze_word_embeddings, cfg.freeze_layers)
    spec = make_spec("bench", profile.encoder, "hybrid", cfg, profile.seed, pairs)
    with tempfile.TemporaryDirectory() as d:
        train_run(model, pairs, spec, Path(d) / "run", save_fn=lambda m, f: None, show_progress=False)
        log = pd.read_csv(Path(d) / "run" / "train_log.csv")
    return log.seconds.to_numpy()[n_warm:], log.loss.to_numpy()


def st_times(profile, train, pairs, batches, n_warm: int, n_time: int, freeze_word_embeddings: bool):
    """Seconds per step of plain SentenceTransformerTrainer + MNRL on the same batches, in order."""
    n = n_warm + n_time
    rows = np.concatenate([np.asarray(b.indices) for b in batches[:n]])
    model = load_encoder(profile.encoder)
    model.max_seq_length = train.max_seq_length
    if freeze_word_embeddings:
        model[0].auto_model.get_input_embeddings().weight.requires_grad_(False)
    q_prefix, p_prefix = model.prompts["query"], model.prompts["passage"]
    data = Dataset.from_dict({"query": [q_prefix + t for t in pairs["query"].to_numpy()[rows]],
                              "passage": [p_prefix + t for t in pairs["passage"].to_numpy()[rows]]})
    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    def in_order(dataset, batch_size, drop_last=False, valid_label_columns=None, generator=None, seed=0):
        return BatchSampler(SequentialSampler(range(len(dataset))), batch_size, drop_last)

    with tempfile.TemporaryDirectory() as d:
        args = SentenceTransformerTrainingArguments(
            output_dir=d, per_device_train_batch_size=train.batch_size, max_steps=n, learning_rate=train.lr,
            weight_decay=train.weight_decay, warmup_ratio=0.1, batch_sampler=in_order, report_to="none",
            save_strategy="no", logging_strategy="no", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0)
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data,
                                             loss=MultipleNegativesRankingLoss(model, scale=1 / 0.05),
                                             callbacks=[Clock()])
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # the trainer prints its summary; stdout is the JSON
            trainer.train()
    stamps = [start] + stamps
    return np.diff(stamps)[n_warm:]


def dev_run(profile, train, pairs, dev, steps: int, precision: str) -> dict:
    """Dev scores after ``steps`` steps of the kit's loop at ``precision``, and the training time."""
    cfg = dataclasses.replace(train, steps=steps, precision=precision, checkpoint_every=10_000)
    model = load_encoder(profile.encoder)
    base_length = model.max_seq_length
    model.max_seq_length = cfg.max_seq_length
    set_trainable(model, cfg.freeze_word_embeddings, cfg.freeze_layers)
    with tempfile.TemporaryDirectory() as d:
        rec = train_run(model, pairs, make_spec("dev", profile.encoder, "hybrid", cfg, profile.seed, pairs), Path(d) / "r",
                        save_fn=lambda m, f: None, show_progress=False)
    scores = dev_scores(model, dev, profile, max_seq_length=base_length, shared_layers=cfg.freeze_layers)
    return {**scores, "train_seconds": rec["train_seconds"]}


def quick_setup(n_batches: int):
    """The quick profile, its recipe, MLQA-R training pairs, the dev set and the first ``n_batches``
    hybrid batches: what every training benchmark times on (also ``train_chunks.py``)."""
    profile = config.load("quick")
    train = profile.train
    pairs, _ = training_pairs(profile, evaluation_sets(profile))
    dev = retrieval_set(profile, "mlqa-r-dev")
    batches = planned_batches(HybridBatchSampler(pairs, train.batch_size, train.alpha, seed=profile.seed), n_batches)
    return profile, train, pairs, dev, batches


def alternating_rounds(variants: dict) -> dict[str, list[float]]:
    """Seconds of each ``variants[name]()`` (per-step seconds, summed) in two rounds, A B ... then
    reversed, so that drift on the machine falls on every variant alike."""
    names = list(variants)
    rounds: dict[str, list[float]] = {k: [] for k in names}
    for order in (names, names[::-1]):
        for name in order:
            rounds[name].append(float(np.sum(variants[name]())))
    return rounds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--dev-steps", type=int, default=100)
    args = ap.parse_args()
    profile, train, pairs, dev, batches = quick_setup(args.warmup + args.steps)
    load_before = os.getloadavg()
    variants = {
        "sentence-transformers trainer + MNRL (plain: every weight trained, fp32)":
            lambda: st_times(profile, train, pairs, batches, args.warmup, args.steps, False),
        "sentence-transformers trainer + MNRL, word embeddings frozen":
            lambda: st_times(profile, train, pairs, batches, args.warmup, args.steps, True),
        "kit fp32 (exact), nothing but word embeddings frozen":
            lambda: kit_times(profile, train, pairs, batches, args.warmup, args.steps, "fp32", 0)[0],
        "kit bf16 autocast, nothing but word embeddings frozen":
            lambda: kit_times(profile, train, pairs, batches, args.warmup, args.steps, "bf16-autocast", 0)[0],
        f"kit fp32 (exact), recipe: embeddings + {train.freeze_layers} layers frozen":
            lambda: kit_times(profile, train, pairs, batches, args.warmup, args.steps, "fp32", train.freeze_layers)[0],
        f"kit default (bf16 autocast), recipe: embeddings + {train.freeze_layers} layers frozen":
            lambda: kit_times(profile, train, pairs, batches, args.warmup, args.steps, "auto", train.freeze_layers)[0],
    }
    names = list(variants)
    rounds = alternating_rounds(variants)
    pairs_per_s = {k: train.batch_size * args.steps / statistics.median(v) for k, v in rounds.items()}
    baseline, default = names[0], names[-1]
    _, loss_fp32 = kit_times(profile, train, pairs, batches, 0, 20, "fp32", train.freeze_layers)
    _, loss_bf16 = kit_times(profile, train, pairs, batches, 0, 20, "auto", train.freeze_layers)
    dev_fp32 = dev_run(profile, train, pairs, dev, args.dev_steps, "fp32")
    dev_bf16 = dev_run(profile, train, pairs, dev, args.dev_steps, "auto")
    print(json.dumps({
        "claim": "the kit's default step >= 2x plain sentence-transformers; bf16 learns what fp32 learns",
        "model": profile.encoder, "batch_size": train.batch_size, "max_seq_length": train.max_seq_length,
        "pairs": "MLQA-R training part (quick profile), the kit's hybrid batches in the same order for every variant",
        "timed_steps": args.steps, "warmup_steps": args.warmup, "rounds": 2,
        "default_precision": resolve_train_precision("auto"),
        "seconds_per_round": rounds, "pairs_per_second": pairs_per_s,
        "kit_default_over_plain_st": pairs_per_s[default] / pairs_per_s[baseline],
        "goal_ratio": 2.0, "meets_ratio_goal": pairs_per_s[default] / pairs_per_s[baseline] >= 2.0,
        "loss_first_20_steps": {"fp32": loss_fp32.tolist(), "bf16_autocast": loss_bf16.tolist(),
                                "max_abs_diff": float(np.abs(loss_fp32 - loss_bf16).max())},
        "dev_after_steps": args.dev_steps, "dev_fp32": dev_fp32, "dev_bf16_autocast": dev_bf16,
        "dev_map_max_abs_diff": max(abs(dev_fp32[k] - dev_bf16[k]) for k in ("dev_mono", "dev_cross", "dev_multi")),
        "goal_dev_diff": 0.005,
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "processor": environment.cpu_name(),
                    "load_average_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]},
    }, indent=2))


if __name__ == "__main__":
    main()
