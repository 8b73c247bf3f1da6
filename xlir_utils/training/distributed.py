"""Training on several processes with PyTorch DDP (``torchrun`` or ``accelerate launch``; README,
"Scaling out").

Hybrid batches stay hybrid across devices: every process plans the *same* global batches from
the seed (so a batch's kind, X-X or X-Y, and its language are drawn once per global step), takes
its contiguous shard of each global batch (:func:`shard`), embeds it, and all-gathers the
embeddings (:func:`gather_rows`) so that the in-batch negatives span the whole global batch: a
monolingual batch is never pooled with a cross-lingual one. Each process keeps the gradient path
through its own rows and scales its loss by the world size; DDP averages the gradients, which
gives exactly the gradient of the global-batch loss (the SimCLR/CLIP recipe). One process
(world size 1) runs the plain, unwrapped path of notebook 02.

Without dropout (or in fp32 with dropout off) a run on N processes equals a run on one with the
same global batch up to float rounding (``tests/test_distributed.py``); with dropout the masks
differ, so runs agree in distribution, not bit for bit.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

__all__ = ["DistContext", "SidesForward", "barrier", "context", "gather_rows", "init_from_env", "main_first", "shard",
           "wrap"]


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: rank, number of processes, rank on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, models and records."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def context() -> DistContext:
    """The current process group's context (a single process when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return DistContext()


def init_from_env(backend: str | None = None) -> DistContext:
    """Join the process group that ``torchrun`` / ``accelerate launch`` describe in the environment
    (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``): NCCL on GPUs, gloo on CPUs.
    A plain ``python`` start (no ``WORLD_SIZE`` or 1) stays a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return context()
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed; install the pinned torch wheel")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    return context()


def shard(indices: Sequence[int], ctx: DistContext) -> np.ndarray:
    """This process's contiguous share of a global batch; the shards are disjoint and cover it."""
    idx = np.asarray(indices)
    if len(idx) % ctx.world:
        raise ValueError(f"a global batch of {len(idx)} pairs cannot be split evenly over {ctx.world} processes: "
                         f"choose a batch size divisible by {ctx.world}")
    per = len(idx) // ctx.world
    return idx[ctx.rank * per:(ctx.rank + 1) * per]


def gather_rows(x: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Every process's rows, in rank order (the global batch's order), with the gradient path
    kept through this process's own rows (the others are constants here; their owners hold them)."""
    if not ctx.distributed:
        return x
    parts = [torch.empty_like(x) for _ in range(ctx.world)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[ctx.rank] = x
    return torch.cat(parts, dim=0)


def barrier(ctx: DistContext) -> None:
    """Wait for every process (a no-op for one)."""
    if ctx.distributed:
        dist.barrier()


def main_first(fn, ctx: DistContext | None = None):
    """``fn()`` on rank 0, then (after a barrier) on the others: for steps that write or repair
    shared files (processed data, an interrupted model-folder swap) before the others read them."""
    ctx = ctx or context()
    result = fn() if ctx.is_main else None
    barrier(ctx)
    return fn() if not ctx.is_main else result


class SidesForward(torch.nn.Module):
    """One DDP forward per step: every side of the (local) batch embedded by ``embed_fn``."""

    def __init__(self, model, embed_fn):
        super().__init__()
        self.model = model
        self.embed_fn = embed_fn

    def forward(self, sides: list[tuple[list[str], list[str], str]]) -> list[torch.Tensor]:
        return [self.embed_fn(self.model, texts, langs, kind) for texts, langs, kind in sides]


def wrap(module: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    """``module`` under DistributedDataParallel for several processes (as is for one). Unused
    parameters are expected: per-side language adapters leave the adapters of languages absent
    from a batch without a gradient."""
    if not ctx.distributed:
        return module
    device = next(module.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)
