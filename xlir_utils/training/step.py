"""What one training step computes (notebook 02 §3): trainable parameters, precision, the
learning-rate schedule, and one side of a batch embedded with gradients.

**Faster on a CPU, same learning.** ``precision="auto"`` runs the forward and backward passes
under bfloat16 autocast where the hardware has native bf16 (AVX512-BF16/AMX, or a bf16 GPU) and,
on a CPU, it is also measured faster than fp32 (:func:`xlir_utils.environment.cpu_bf16_faster`):
weights, optimiser state, similarities and the loss stay fp32. ``"fp32"`` is exact.
``benchmarks/train_step.py`` measures both against plain sentence-transformers. Freezing the
embeddings and the lowest ``freeze_layers`` transformer layers removes their backward pass;
that *does* change what is learned, so it is a recipe choice, made on the development set.

**Length-sorted chunks.** A side of a batch runs through the encoder in chunks of
``TrainConfig.chunk_rows`` rows of similar length (:func:`length_chunks`), each padded only to
its own longest text, instead of padding every text of the side to the longest: on MLQA-R's
training pairs, at the quick recipe's batch of 32, that computes 43 % fewer tokens and trains
1.6x faster for the same loss function (padding is masked out). Dropout draws its masks per
chunk, so a run is another draw of the same recipe; ``chunk_rows`` is therefore part of the
recipe digest. ``benchmarks/train_chunks.py`` measures both.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch

from .. import environment

EmbedFn = Callable[[object, Sequence[str], Sequence[str], str], torch.Tensor]
TRAIN_PRECISIONS = ("auto", "fp32", "bf16-autocast")
CHUNK_ROWS = 8  # rows per length-sorted chunk of a batch side (0: one padded batch); a run sets its own (chunked)
SCHEDULES = ("linear", "constant")


def resolve_train_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """The concrete precision of training on ``device``: "bf16-autocast" or "fp32"."""
    if precision not in TRAIN_PRECISIONS:
        raise ValueError(f"training precision must be one of {TRAIN_PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    return "bf16-autocast" if environment.native_bf16(device) else "fp32"


def machine_precision(precision: str) -> str:
    """``precision`` resolved for this machine's training device (CUDA when present, else the CPU):
    what recipe digests record (notebooks 02-03)."""
    return resolve_train_precision(precision, "cuda" if torch.cuda.is_available() else "cpu")


def autocast_for(precision: str, device: torch.device) -> torch.autocast:
    """The autocast context of a concrete precision (disabled for fp32)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16-autocast")


def set_trainable(model, freeze_word_embeddings: bool = True, freeze_layers: int = 0) -> int:
    """Full fine-tuning of a sentence-transformers model, with frozen word embeddings and, with
    ``freeze_layers`` = k > 0, the whole embedding block and the lowest k transformer layers
    frozen (notebook 02 §4); returns the number of trainable parameters."""
    auto = model[0].auto_model
    layers = auto.encoder.layer
    if not 0 <= freeze_layers <= len(layers):
        raise ValueError(f"freeze_layers must be in [0, {len(layers)}], got {freeze_layers}")
    for param in model.parameters():
        param.requires_grad_(True)
    if freeze_word_embeddings:
        auto.get_input_embeddings().weight.requires_grad_(False)
    if freeze_layers:
        auto.embeddings.requires_grad_(False)
        for layer in layers[:freeze_layers]:
            layer.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def linear_warmup_decay(warmup: int, total: int) -> Callable[[int], float]:
    """The learning-rate factor of step ``step``: linear warm-up over ``warmup`` steps, then linear
    decay to 0 at ``total`` (for ``LambdaLR``; the MLM loops of notebook 03 use it too)."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


def warmup_constant(warmup: int) -> Callable[[int], float]:
    """Linear warm-up over ``warmup`` steps, then constant: the model after step s does not depend
    on the total budget, so a run stopped at s (early stopping) equals a run of s steps."""
    def f(step: int) -> float:
        return (step + 1) / warmup if step < warmup else 1.0
    return f


def lr_schedule(cfg) -> Callable[[int], float]:
    """The schedule a :class:`~xlir_utils.config.TrainConfig` names (``cfg.schedule``)."""
    if cfg.schedule == "linear":
        return linear_warmup_decay(math.ceil(cfg.warmup_ratio * cfg.steps), cfg.steps)
    if cfg.schedule == "constant":
        return warmup_constant(cfg.warmup_steps)
    raise ValueError(f"unknown schedule {cfg.schedule!r}; choose one of {SCHEDULES}")


def length_chunks(lengths: Sequence[int], rows: int | None = None) -> list[list[int]]:
    """Row positions sorted by length (longest first, ties by position) and cut into chunks of
    ``rows`` (default :data:`CHUNK_ROWS`; 0: one chunk of every row in order), notebook 02 §3."""
    rows = CHUNK_ROWS if rows is None else rows
    if rows <= 0:
        return [list(range(len(lengths)))]
    order = sorted(range(len(lengths)), key=lambda i: (-int(lengths[i]), i))
    return [order[i: i + rows] for i in range(0, len(order), rows)]


@contextmanager
def chunked(rows: int) -> Iterator[None]:
    """Within the block, batch sides run in length-sorted chunks of ``rows`` rows (a run's
    ``TrainConfig.chunk_rows``; :func:`xlir_utils.training.train_run` sets it)."""
    global CHUNK_ROWS
    saved, CHUNK_ROWS = CHUNK_ROWS, int(rows)
    try:
        yield
    finally:
        CHUNK_ROWS = saved


def in_input_order(chunks: Sequence[Sequence[int]], outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """The chunks' outputs concatenated and put back into the rows' input order (gradients flow)."""
    if not outputs:
        raise ValueError("no rows to embed: a batch side needs at least one text")
    out = outputs[0] if len(outputs) == 1 else torch.cat(list(outputs))
    order = [i for chunk in chunks for i in chunk]
    if order == list(range(len(order))):
        return out
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
    return out[inverse.to(out.device)]


def embed_with_grad(model, texts: Sequence[str], langs: Sequence[str], kind: str) -> torch.Tensor:
    """Embed one side of a training batch *with gradients*, in length-sorted chunks
    (:func:`length_chunks`): a torch tensor, rows in input order, not normalised (the loss
    normalises). The prompt of ``kind`` is prepended; ``langs`` is unused here (adapter routing
    uses it). For evaluation use :func:`xlir_utils.encoders.encode` (numpy, normalised, cached)."""
    prefix = (getattr(model, "prompts", None) or {}).get(kind, "")
    texts = [prefix + t for t in texts]
    preprocess = getattr(model, "preprocess", None)  # `tokenize`, its older name, warns that it is deprecated
    features = preprocess(inputs=texts) if preprocess is not None else model.tokenize(texts)
    device = next(model.parameters()).device
    mask = features["attention_mask"]
    chunks = length_chunks(mask.sum(dim=1).tolist())
    outputs = []
    for chunk in chunks:
        rows = torch.tensor(chunk, dtype=torch.long)
        keep = mask[rows].any(dim=0)  # the token positions some text of the chunk uses (either padding side)
        outputs.append(model({k: _rows_of(v, rows, keep, len(texts)).to(device) if torch.is_tensor(v) else v
                              for k, v in features.items()})["sentence_embedding"])
    return in_input_order(chunks, outputs)


def _rows_of(v: torch.Tensor, rows: torch.Tensor, keep: torch.Tensor, n: int) -> torch.Tensor:
    """A feature tensor cut to a chunk: its rows, and for per-token tensors the positions kept."""
    if v.dim() == 0 or v.shape[0] != n:
        return v  # not per text (e.g. a prompt length)
    v = v[rows]
    return v[:, keep] if v.dim() == 2 and v.shape[1] == keep.shape[0] else v
