"""Contrastive fine-tuning with X-X / X-Y / hybrid batches (notebook 02), resumable.

A plain loop, so that every step is visible: the sampler picks rows of the pairs table, each
side is embedded (queries with the ``query`` prompt, passages with ``passage``), and the
in-batch InfoNCE loss scores each query against every passage of the batch.

* :mod:`.loss` - the InfoNCE loss (a stated deviation from the paper's printed loss);
* :mod:`.step` - what a step computes: trainable parameters (frozen embeddings and lowest
  layers), precision (bf16 autocast with fp32 master weights, or exact fp32), learning-rate
  schedules, embedding one side with gradients;
* :mod:`.spec` - run specs and their digests (which key reuse), the record of a finished run;
* :mod:`.loop` - :func:`train_run`: the loop, checkpoints, resume, the run record;
* :mod:`.runs` - run names (sampling, alpha, seed), reuse across an α sweep, notebook 02's
  :func:`train_full`;
* :mod:`.frozen_prefix` - training above a frozen prefix computed once (the adapter variants);
* :mod:`.distributed` - the same loop on several processes (``torchrun``, ``accelerate launch``);
* :mod:`.cli` - the command line, ``python -m xlir_utils.training``.

Runs live in ``runs/<profile>/<name>/``: ``model/`` (a sentence-transformers folder),
``run.json`` (what produced it, and the SHA-256 of every saved file), ``train_log.csv`` (loss
and batch kind per step) and, while training, ``checkpoint.pt`` (trainable weights, optimiser,
scheduler, RNG), written atomically. A finished run with the same recipe and intact files is
reused; an interrupted one resumes, a damaged one is trained again. One process writes a run at
a time (``<name>.lock`` beside the folder; another gets ``BusyError``).
"""
from .loop import train_run
from .loss import info_nce
from .runs import canonical_sampling, finished_runs, read_train_logs, run_name, run_summary, train_full
from .spec import SAMPLINGS, RunSpec, finished_record, make_spec, pairs_digest, run_lock
from .step import (
    EmbedFn,
    embed_with_grad,
    linear_warmup_decay,
    lr_schedule,
    resolve_train_precision,
    set_trainable,
    warmup_constant,
)

__all__ = [
    "SAMPLINGS", "EmbedFn", "RunSpec", "canonical_sampling", "embed_with_grad", "finished_record", "finished_runs",
    "info_nce", "linear_warmup_decay", "lr_schedule", "make_spec", "pairs_digest", "read_train_logs",
    "resolve_train_precision", "run_lock", "run_name", "run_summary", "set_trainable", "train_full", "train_run",
    "warmup_constant",
]
