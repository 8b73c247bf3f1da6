"""Benchmark: a floor under `make reproduce` (quick profile, every seed and system) on this machine.

It measures the costs that no study, head, adapter or eraser choice can remove, on the quick
profile's real data and model, and multiplies each by the number of times the three-seed
reproduction pays it:

* a full fine-tuning step of the recipe (hybrid batches, batch 32, length 128, six frozen layers,
  the precision the machine chooses), the kit's own loop, timed over ``--steps`` steps after
  ``--warmup``; every training run of notebook 02 (X-X, X-Y, hybrid, the α sweep's inner points,
  CS and CS + hybrid, at every seed) takes the recipe's 100 steps of it;
* one trained run's encoding of XQuAD-R, of ``mlqa-r-dev`` and of the Tatoeba sentences through its
  upper layers, the frozen lower layers' states shared from the base model (how notebook 04 encodes
  every trained run once the first has filled the store): the base model encodes each set once,
  then a copy with changed upper layers is timed on it;
* the zero-shot encoder's own passes (every layer) over those sets and all of MLQA-R.

Left out, so the sum is a floor and not an estimate: the adapter variants' training (notebook 03),
the per-side runs' second and third routings, loading and saving models, the dev studies, the MLM
head study and language adapters, the erasers (notebook 05) and every notebook's other cells.
Prints JSON (committed as ``benchmarks/results/reproduce_floor.json``). Run it alone:

    .venv/bin/python benchmarks/reproduce_floor.py [--steps 10] [--warmup 2]
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from xlir_utils import config, paths
from xlir_utils.data import evaluation_sets, retrieval_set, tatoeba_pairs, training_pairs
from xlir_utils.encoders import encode, load_encoder
from xlir_utils.encoders import prefix
from xlir_utils.environment import apply_threads, cpu_name
from xlir_utils.training import make_spec, set_trainable, train_run

if not os.environ.get("XLIR_DATA_DIR", "").strip():
    os.environ["XLIR_DATA_DIR"] = str((paths.project_root().parent / "shared" / "data").resolve())

BUDGET_MINUTES = 150


def step_seconds(profile, pairs, warmup: int, steps: int) -> tuple[float, str]:
    """Seconds per training step of the recipe (the kit's per-step log) and the precision used."""
    train = dataclasses.replace(profile.train, steps=warmup + steps, checkpoint_every=10_000)
    model = load_encoder(profile.encoder, profile)
    model.max_seq_length = train.max_seq_length
    set_trainable(model, train.freeze_word_embeddings, train.freeze_layers)
    spec = make_spec("floor", profile.encoder, "hybrid", train, profile.seed, pairs)
    with tempfile.TemporaryDirectory() as d:
        record = train_run(model, pairs, spec, Path(d) / "run", save_fn=lambda m, f: None, show_progress=False)
        log = pd.read_csv(Path(d) / "run" / "train_log.csv")
    return float(log.seconds.iloc[warmup:].mean()), record["precision"]


def encode_seconds(base, trained, texts_by_kind: dict[str, list[str]], profile) -> tuple[float, float]:
    """(base model's full pass, trained copy's pass through its upper layers) over the texts, in seconds."""
    kw = dict(cache=False, show_progress=False, batch_tokens=profile.encode_batch_tokens,
              shared_layers=profile.train.freeze_layers)
    prefix.clear()
    start = time.perf_counter()
    for kind, texts in texts_by_kind.items():
        encode(base, texts, kind, **kw)
    full = time.perf_counter() - start
    start = time.perf_counter()
    for kind, texts in texts_by_kind.items():
        encode(trained, texts, kind, **kw)
    upper = time.perf_counter() - start
    prefix.clear()
    return full, upper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    threads = apply_threads()
    profile = config.load("quick")
    pairs, _ = training_pairs(profile, evaluation_sets(profile))
    step, precision = step_seconds(profile, pairs, args.warmup, args.steps)

    base = load_encoder(profile.encoder, profile)
    trained = copy.deepcopy(base)  # the same frozen lower layers, other upper layers: a trained run's case
    with torch.no_grad():
        trained[0].auto_model.encoder.layer[-1].output.dense.weight.mul_(1.01)
    sets = {name: retrieval_set(profile, name) for name in ("xquad-r", "mlqa-r-dev", "mlqa-r")}
    texts = {name: {"query": r.queries.text.tolist(), "passage": r.candidate_texts(profile.candidate_text)}
             for name, r in sets.items()}
    tatoeba = [tatoeba_pairs(lang).head(profile.tatoeba_pairs) for lang in profile.tatoeba_languages]
    texts["tatoeba"] = {"query": [t for p in tatoeba for t in (*p.en, *p.xx)]}  # both sides as queries, as notebook 04
    seconds = {}
    for name, by_kind in texts.items():
        full, upper = encode_seconds(base, trained, by_kind, profile)
        seconds[name] = {"texts": sum(map(len, by_kind.values())), "zero_shot_full_pass": full, "trained_run": upper}

    seeds = len(profile.seeds)
    inner_alphas = [a for a in profile.train.alpha_sweep if a not in (0.0, 1.0, profile.train.alpha)]
    counts = {
        "training runs, 100 steps each (X-X, X-Y, hybrid, α-sweep points, CS, CS + hybrid; every seed)":
            seeds * (3 + len(inner_alphas) + 2),
        "trained runs encoded on XQuAD-R and mlqa-r-dev (full and CS runs, one routing per adapter run)":
            seeds * (3 + 2 + len(profile.adapters.variants)),
        "α-sweep runs encoded on XQuAD-R only": seeds * len(inner_alphas),
        "trained runs encoded on Tatoeba (X-X, X-Y, hybrid, CS, CS + hybrid)": seeds * 5,
    }
    n_train, n_lareqa, n_alpha, n_tatoeba = counts.values()
    minutes = {
        "training": n_train * profile.train.steps * step / 60,
        "encoding trained runs": (n_lareqa * (seconds["xquad-r"]["trained_run"] + seconds["mlqa-r-dev"]["trained_run"])
                                  + n_alpha * seconds["xquad-r"]["trained_run"]
                                  + n_tatoeba * seconds["tatoeba"]["trained_run"]) / 60,
        "encoding the zero-shot encoder": sum(s["zero_shot_full_pass"] for s in seconds.values()) / 60,
    }
    floor = sum(minutes.values())
    print(json.dumps({
        "claim": "a floor under the quick profile's three-seed `make reproduce` from the costs no choice removes",
        "machine": {"cpu": cpu_name(), "threads": threads,
                    "torch": torch.__version__, "cores": os.cpu_count()},
        "precision": precision,
        "seconds_per_training_step": step,
        "encode_seconds": seconds,
        "counts": counts,
        "floor_minutes": {**minutes, "total": floor},
        "budget_minutes": BUDGET_MINUTES,
        "floor_over_budget": floor / BUDGET_MINUTES,
        "left_out": "adapter training, second and third routings, model loads and saves, dev studies, MLM head and "
                    "language adapters, erasers, every other cell",
    }, indent=2))


if __name__ == "__main__":
    main()
