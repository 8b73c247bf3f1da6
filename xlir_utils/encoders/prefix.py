"""A frozen prefix computed once: the hidden states after the embeddings and the lowest k layers.

When training freezes the embedding block and the lowest k transformer layers
(``TrainConfig.freeze_layers``), every trained model and the zero-shot encoder compute exactly
the same hidden states up to layer k. :func:`encode` (``shared_layers=k``) then computes them
once per text list, keeps them in a temporary file (within :func:`budget_bytes`;
:class:`SpilledStates`: the process holds one batch's states at a time, the operating system's
file cache the rest), and runs only the upper layers for each model: about half the encoding
time at k = 6 of 12 (notebooks 02 §6 and 04 §3 evaluate many models on the same texts).
Sharing is keyed by a fingerprint of the prefix's weights, so a model whose lower layers differ
(or that applies an invertible adapter to its embeddings) never reuses another's states; the
batches are the same token-budget batches as a full pass, so the embeddings are the same numbers
as :func:`encode` without sharing (tested). Where no file can be written (a full disk, a
read-only cache), where the states would leave the disk with less than :data:`DISK_HEADROOM`, or
where a stored file cannot be read back, the pass goes on without sharing, with a warning.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import torch
import xxhash
from torch import nn

from .. import paths
from .fingerprint_scope import remembered

BUDGET_ENV = "XLIR_PREFIX_STORE_GB"
# quick: XQuAD-R's queries and candidates plus the MLQA-R dev articles take 1.8 GB, and as much again
# as the per-language lists a per-side adapter routing encodes (one list per language and side)
DEFAULT_GB = 4.0
MAX_LISTS = 64  # text lists kept at most, each with an open file; notebook 04 reuses about 45
DISK_HEADROOM = 2**30  # states are not written where they would leave less free (model saves, results)
_STORE: "OrderedDict[tuple, SpilledStates | DeviceStates]" = OrderedDict()


def budget_bytes() -> int:
    """The most prefix states kept (``XLIR_PREFIX_STORE_GB``, default 4; 0 shares nothing): in
    temporary files under ``XLIR_CACHE_DIR`` on the CPU, in the accelerator's memory on one.

    It bounds their disk space and the file cache they occupy (or the device memory): a text
    list whose states exceed it is encoded without sharing, and before a list's states are
    computed, stored lists are dropped least recently used first until they fit beside them
    (:func:`make_room`), so states never exceed it together.
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


def states_folder() -> Path:
    """Where the unnamed state files are made: ``prefix-states/`` under ``XLIR_CACHE_DIR``."""
    return paths.cache_dir() / "prefix-states"


class SpilledStates:
    """One text list's prefix states, batch by batch, in an unlinked temporary file: the process
    holds only the batch it reads (notebook 04's memory does not grow by the 1.8 GB of states of
    quick's XQuAD-R and dev texts), while the operating system's file cache keeps reads about as
    fast as memory when there is room for it. The file has no name on disk and goes when the
    states are dropped or the process ends, however it ends. Writes are unbuffered, so a full
    disk shows at :meth:`append`; each read and write seeks to its batch's offset first."""

    def __init__(self, folder: Path | None = None):
        folder = folder or paths.ensure(states_folder())
        self._file = tempfile.TemporaryFile(dir=folder, buffering=0)
        self._index: list[tuple[int, torch.Size, torch.dtype]] = []
        self.nbytes = 0

    def append(self, states: torch.Tensor) -> None:
        """Write one batch's states (any device, layout or dtype) after the previous ones."""
        raw = tensor_bytes(states)
        self._file.seek(self.nbytes)
        while raw:
            raw = raw[self._file.write(raw):]
        self._index.append((self.nbytes, states.shape, states.dtype))
        self.nbytes = self._file.tell()

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, batch: int) -> torch.Tensor:
        """Batch ``batch``'s states, read back bit for bit (on the CPU)."""
        offset, shape, dtype = self._index[batch]
        out = torch.empty(shape, dtype=dtype)
        view = memoryview(out.view(torch.uint8).numpy()).cast("B")
        self._file.seek(offset)
        while view:
            got = self._file.readinto(view)
            if not got:
                raise OSError(f"the prefix states file ended early, at batch {batch}")
            view = view[got:]
        return out

    def close(self) -> None:
        self._file.close()


class DeviceStates(list):
    """One text list's prefix states kept where they were computed, for an accelerator: copying
    them to a file and back would cost what sharing saves (the CPU keeps :class:`SpilledStates`)."""

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self)

    def close(self) -> None:
        self.clear()


def new_states(device: torch.device | str = "cpu", nbytes: int = 0) -> SpilledStates | DeviceStates | None:
    """Where a pass on ``device`` keeps the ``nbytes`` of states it computes: on the CPU a new
    :class:`SpilledStates` under ``XLIR_CACHE_DIR``, or None (with a warning: the pass goes on
    without sharing) where no file can be made there or where they would leave less than
    :data:`DISK_HEADROOM` free on its disk; on an accelerator a :class:`DeviceStates`."""
    if torch.device(device).type != "cpu":
        return DeviceStates()
    folder = states_folder()
    try:
        paths.ensure(folder)
        free = shutil.disk_usage(folder).free
        if free - nbytes < DISK_HEADROOM:
            raise OSError(f"{nbytes / 2**30:.2f} GB of states would leave less than "
                          f"{DISK_HEADROOM / 2**30:.0f} GB of the {free / 2**30:.2f} GB free")
        return SpilledStates(folder)
    except OSError as exc:
        warnings.warn(f"The frozen lower layers' states are not shared: no temporary file could be made under "
                      f"{folder} ({exc}). Free space there or point XLIR_CACHE_DIR elsewhere; "
                      "encoding goes on without sharing.", stacklevel=2)
        return None


def spill(states: SpilledStates | DeviceStates | None, batch: torch.Tensor
          ) -> SpilledStates | DeviceStates | None:
    """``batch`` appended to ``states``; None (with a warning) once the file cannot take it (a full
    disk), so that the pass goes on without keeping states."""
    if states is None:
        return None
    try:
        states.append(batch)
        return states
    except OSError as exc:
        states.close()
        warnings.warn(f"The frozen lower layers' states are not kept for the next model: writing them under "
                      f"{states_folder()} failed ({exc}). Free space there or point XLIR_CACHE_DIR elsewhere; "
                      "this pass goes on.", stacklevel=2)
        return None


def forget(key: tuple, reason: BaseException) -> None:
    """Drop the stored states of ``key`` that could not be read back (with a warning): this pass
    and later ones compute the lower layers again."""
    dropped = _STORE.pop(key, None)
    if dropped is not None:
        dropped.close()
    warnings.warn(f"The stored states of the frozen lower layers could not be read back ({reason}); they are "
                  "dropped and the lower layers computed again.", stacklevel=2)


def cached_states(key: tuple) -> SpilledStates | DeviceStates | None:
    """The stored prefix states of ``key`` (indexed by batch), marked most recently used."""
    hit = _STORE.get(key)
    if hit is not None:
        _STORE.move_to_end(key)
    return hit


def make_room(nbytes: int) -> None:
    """Drop stored states, least recently used first, until ``nbytes`` more fit the budget and
    one more list fits :data:`MAX_LISTS`: called before new states are computed, so that the
    states held and the ones being built never exceed :func:`budget_bytes` together."""
    budget = budget_bytes()
    while _STORE and (stored_bytes() + nbytes > budget or len(_STORE) >= MAX_LISTS):
        _STORE.popitem(last=False)[1].close()


def store_states(key: tuple, states: SpilledStates | DeviceStates) -> None:
    """Keep ``states`` for ``key`` as the most recently used, after :func:`make_room` for them
    (``states`` themselves are not kept, and their file goes, if they alone exceed :func:`budget_bytes`)."""
    nbytes = states.nbytes
    if nbytes > budget_bytes():
        states.close()
        return
    earlier = _STORE.pop(key, None)  # states stored again replace their earlier copy
    if earlier is not None and earlier is not states:
        earlier.close()
    make_room(nbytes)
    _STORE[key] = states


def stored_bytes() -> int:
    """The bytes of prefix states held now (``benchmarks/prefix_store_memory.py``, the tests)."""
    return sum(v.nbytes for v in _STORE.values())


def clear() -> None:
    """Forget every stored prefix, and remove their files (tests; ``benchmarks/``)."""
    while _STORE:
        _STORE.popitem()[1].close()
