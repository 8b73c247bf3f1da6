"""Notebook 02's training from the command line, on one process or many (README, "Scaling out").

One process::

    python -m xlir_utils.training --profile quick --sampling hybrid --seed 13

Several, with the engines PyTorch users know (GPUs use NCCL, CPUs gloo)::

    torchrun --standalone --nproc_per_node 4 -m xlir_utils.training --profile paper --sampling hybrid
    accelerate launch --num_processes 4 -m xlir_utils.training --profile paper --sampling hybrid

It builds the training pairs as notebook 02 §1 does (leakage check included) and calls the same
:func:`xlir_utils.training.train_full`, so a run trained here is the run notebook 02 reuses
(``runs/<profile>/<name>/``). ``--batch-size`` is the *global* batch; each process embeds its
share (:mod:`xlir_utils.training.distributed`).
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch.distributed as dist

from .. import config, data
from ..errors import SettingsError
from . import distributed as D
from .runs import train_full
from .spec import SAMPLINGS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``--help`` lists it)."""
    p = argparse.ArgumentParser(prog="python -m xlir_utils.training", description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default=None, help="smoke | quick | paper (default: XLIR_PROFILE or quick)")
    p.add_argument("--sampling", default="hybrid", choices=SAMPLINGS)
    p.add_argument("--alpha", type=float, default=None, help="share of X-X batches for hybrid (default: the profile's)")
    p.add_argument("--seed", type=int, default=None, help="training seed (default: the profile's first)")
    p.add_argument("--encoder", default=None, help="base encoder: a name of the kit, a hub id or a folder")
    p.add_argument("--runs-root", type=Path, default=None, help="where run folders go (default: runs/<profile>)")
    p.add_argument("--train", default="{}", help='TrainConfig fields to override, as JSON: \'{"steps": 4}\'')
    p.add_argument("--profile-overrides", default="{}",
                   help='other Profile fields, as JSON (tests shrink the paper profile with it): \'{"train_queries": 50}\'')
    p.add_argument("--stop-after", type=int, default=None,
                   help="interrupt after this many steps, leaving the checkpoint (tests of resuming)")
    return p.parse_args(argv)


def _json_arg(text: str, flag: str) -> dict:
    """A JSON-object option; anything else raises a SettingsError naming the flag and an example."""
    example = '\'{"train_queries": 50}\'' if flag == "--profile-overrides" else '\'{"steps": 4}\''
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise SettingsError(f"{flag} {text!r} is not valid JSON ({exc}): pass a JSON object, e.g. "
                            f"{flag} {example}") from None
    if not isinstance(value, dict):
        raise SettingsError(f"{flag} {text!r} is not a JSON object: pass one, e.g. {flag} {example}")
    return value


def main(argv: list[str] | None = None) -> dict:
    """Train one run (every process of a distributed job runs this); prints the record on rank 0.
    ``python -m xlir_utils.training`` runs it through :func:`xlir_utils.cli.run`."""
    args = parse_args(argv)
    changes = _json_arg(args.profile_overrides, "--profile-overrides")
    train = _json_arg(args.train, "--train")
    if train:
        changes["train"] = train
    if args.encoder:
        changes["encoder"] = args.encoder
    profile = config.load(args.profile)  # a bad setting fails here, before any process group forms
    if changes:
        profile = profile.replace(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in changes.items()})
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ctx = D.init_from_env()
    # rank 0 builds (and caches) the processed data first; the others read it
    pairs, _ = D.main_first(lambda: data.training_pairs(profile, data.evaluation_sets(profile)), ctx)
    record = train_full(profile, args.sampling, pairs, alpha=args.alpha, seed=args.seed,
                        runs_root=args.runs_root, show_progress=ctx.is_main, stop_after=args.stop_after)
    if ctx.is_main and not record.get("finished"):
        print(json.dumps({"interrupted_after": record["step"]}))
    elif ctx.is_main:
        print(json.dumps({"run": record["spec"]["name"], "world_size": record.get("world_size", 1),
                          "steps": record["steps"], "train_seconds": record["train_seconds"],
                          "final_loss_mean_last10": record["final_loss_mean_last10"]}))
    if ctx.distributed:
        dist.destroy_process_group()
    return record
