"""A frozen prefix computed once: the hidden states after the embeddings and the lowest k layers.

When training freezes the embedding block and the lowest k transformer layers
(``TrainConfig.freeze_layers``), every trained model and the zero-shot encoder compute exactly
the same hidden states up to layer k. :func:`encode` (``shared_layers=k``) then computes them
once per text list, keeps them in memory (within :func:`budget_bytes`), and runs only the upper
layers for each model: about half the encoding time at k = 6 of 12 (notebooks 02 §6 and 04 §3
evaluate many models on the same texts). Sharing is keyed by a fingerprint of the prefix's
weights, so a model whose lower layers differ (or that applies an invertible adapter to its
embeddings) never reuses another's states; the batches are the same token-budget batches as a full
pass, so the embeddings are the same numbers as :func:`encode` without sharing (tested).
"""
from __future__ import annotations

import os
from collections import OrderedDict
from contextlib import contextmanager

import torch
import xxhash
from torch import nn

from ..heap import return_freed_heap
from .fingerprint_scope import remembered

BUDGET_ENV = "XLIR_PREFIX_STORE_GB"
DEFAULT_GB = 2.0  # XQuAD-R's queries and candidates plus the MLQA-R dev articles in quick: 1.8 GB
_STORE: "OrderedDict[tuple, list[torch.Tensor]]" = OrderedDict()


def budget_bytes() -> int:
    """The most prefix states kept in memory (``XLIR_PREFIX_STORE_GB``, default 2; 0 shares nothing).

    It bounds memory: a text list whose states exceed it is encoded without sharing, batch by
    batch, and before a list's states are computed, stored lists are dropped least recently used
    first until they fit beside them (:func:`make_room`), so states never exceed it together.
    """
    raw = os.environ.get(BUDGET_ENV, "").strip()
    try:
        gb = float(raw) if raw else DEFAULT_GB
    except ValueError:
        raise ValueError(f"{BUDGET_ENV}={raw!r} is not a number of GB; set it to e.g. 2, or 0 to share "
                         "nothing") from None
    if gb < 0:
        raise ValueError(f"{BUDGET_ENV}={raw!r} is negative; set it to e.g. 2, or 0 to share nothing")
    return int(gb * 2**30)


def states_bytes(widths_and_rows, hidden: int, element_size: int = 4) -> int:
    """The bytes of the prefix states of batches of (padded width, rows), before computing them."""
    return sum(int(w) * int(r) for w, r in widths_and_rows) * hidden * element_size


def weights_hasher(first: bytes = b""):
    """The hash every weight fingerprint uses: XXH3-128, about ten times faster than SHA-256 on
    e5-small's 470 MB (these digests key caches; they guard nothing against an adversary)."""
    h = xxhash.xxh3_128()
    h.update(first)
    return h


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """The raw bytes of a tensor (bf16/fp16/bool as integers), the one way the kit hashes weights
    (:func:`prefix_fingerprint` here, ``model_fingerprint`` for notebooks 02-05's caches)."""
    t = t.detach().to("cpu").contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.view(torch.int16)
    elif t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return memoryview(t.numpy()).cast("B")


def _auto(model):
    return model[0].auto_model


def shareable(model, k: int) -> bool:
    """Whether ``model``'s lowest ``k`` layers can be computed apart: a BERT-style encoder whose
    embedding output is not changed by an (invertible) adapter."""
    auto = _auto(model)
    layers = getattr(getattr(auto, "encoder", None), "layer", None)
    if k <= 0 or layers is None or k > len(layers) or not hasattr(auto, "embeddings"):
        return False
    return len(getattr(auto, "invertible_adapters", None) or {}) == 0


def prefix_fingerprint(model, k: int) -> str:
    """A digest (:func:`weights_hasher`) of the embedding block and the lowest ``k`` layers
    (parameters and buffers, adapter weights inside them included); once per model and ``k`` within
    :func:`~xlir_utils.encoders.fingerprint_scope.frozen_weights`."""
    auto = _auto(model)

    def digest() -> str:
        h = weights_hasher(f"{type(auto).__qualname__}|{k}".encode())
        for prefix, module in [("embeddings", auto.embeddings)] + [(f"layer{i}", auto.encoder.layer[i])
                                                                   for i in range(k)]:
            for name, t in sorted(module.state_dict(keep_vars=True).items()):
                h.update(f"{prefix}.{name}:{t.dtype}:{tuple(t.shape)};".encode())
                h.update(tensor_bytes(t))
        return h.hexdigest()

    setup = f"{k}|{getattr(auto, 'active_adapters', None)!r}"
    return remembered("prefix", model, setup, digest)


class _Injected(nn.Module):
    """Stands in for the embedding block: returns the hidden states it was given."""

    def __init__(self, hidden: torch.Tensor):
        super().__init__()
        self.hidden = hidden

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.hidden


@contextmanager
def lower_layers_only(model, k: int):
    """Within the block, the model's transformer stops after layer ``k`` (its output is the prefix)."""
    encoder = _auto(model).encoder
    layers = encoder.layer
    encoder.layer = nn.ModuleList(list(layers)[:k])
    try:
        yield
    finally:
        encoder.layer = layers


@contextmanager
def upper_layers_from(model, k: int, hidden: torch.Tensor):
    """Within the block, the model starts at layer ``k`` from ``hidden`` (the embedding block and the
    lowest ``k`` layers are skipped); adapters and pooling run as usual."""
    auto = _auto(model)
    embeddings, layers = auto.embeddings, auto.encoder.layer
    auto.embeddings = _Injected(hidden)
    auto.encoder.layer = nn.ModuleList(list(layers)[k:])
    try:
        yield
    finally:
        auto.embeddings = embeddings
        auto.encoder.layer = layers


def _nbytes(states: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in states)


def cached_states(key: tuple) -> list[torch.Tensor] | None:
    """The stored prefix states of ``key`` (one tensor per batch), marked most recently used."""
    hit = _STORE.get(key)
    if hit is not None:
        _STORE.move_to_end(key)
    return hit


def make_room(nbytes: int) -> None:
    """Drop stored states, least recently used first, until ``nbytes`` more fit the budget, and
    hand the freed heap back: called before new states are computed, so that the states held
    and the ones being built never exceed :func:`budget_bytes` together."""
    budget, dropped = budget_bytes(), False
    while _STORE and stored_bytes() + nbytes > budget:
        _STORE.popitem(last=False)
        dropped = True
    if dropped:
        return_freed_heap()


def store_states(key: tuple, states: list[torch.Tensor]) -> None:
    """Keep ``states`` for ``key`` as the most recently used, after :func:`make_room` for them
    (``states`` themselves are not kept if they alone exceed :func:`budget_bytes`)."""
    nbytes = _nbytes(states)
    if nbytes > budget_bytes():
        return
    _STORE.pop(key, None)  # states stored again replace their earlier copy
    make_room(nbytes)
    _STORE[key] = states


def stored_bytes() -> int:
    """The bytes of prefix states held now (``benchmarks/prefix_store_memory.py``, the tests)."""
    return sum(_nbytes(v) for v in _STORE.values())


def clear() -> None:
    """Forget every stored prefix (tests; memory)."""
    _STORE.clear()
