"""What a system is, as data: a frozen :class:`SystemSpec` whose fields every results row carries
as columns, and a :class:`System` (a spec, a seed and a way to embed texts) that notebook 04
evaluates (notebook 04 §2). Labels and display order are derived from the spec in
:mod:`xlir_utils.systems.labels`; nothing parses a system's name.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import SAMPLINGS
from ..heap import release_dropped_models

FAMILIES = ("zero-shot", "full", "adapters", "code-switching")
ROUTINGS = ("own", "en", "none")  # how a language without its own trained adapter is routed

# (texts, langs, kind) -> L2-normalised rows; kind is "query" or "passage"; the kit's own also take
# cache=False (typed explorer questions stay out of the disk cache)
EncodeFn = Callable[[Sequence[str], Sequence[str], str], np.ndarray]

SPEC_COLUMNS = ("family", "base_model", "sampling", "alpha", "adapter_variant", "unseen_routing",
                "post_hoc", "post_hoc_fit")


@dataclass(frozen=True)
class SystemSpec:
    """A system's description; each field is a column of every results table.

    Args:
        family: one of :data:`FAMILIES` (``"zero-shot"``: an off-the-shelf encoder).
        base_model: the encoder the system starts from (``"e5-small-offline"``).
        sampling: the batch sampling of a trained system (:data:`SAMPLINGS`), else None.
        alpha: the share of X-X batches (X-X 1, X-Y 0, hybrid the profile's α), else None.
        adapter_variant: the adapter variant of notebook 03 (``"joint-per-side"``), else None.
        unseen_routing: where languages without a trained adapter of their own go
            (:data:`ROUTINGS`), for per-side adapter variants; else None.
        post_hoc: a post-hoc method applied to the embeddings (``"LIR r=1"``), else None.
        post_hoc_fit: the text that method was fitted on (``"evaluation pool"``), else None.
    """

    family: str
    base_model: str
    sampling: str | None = None
    alpha: float | None = None
    adapter_variant: str | None = None
    unseen_routing: str | None = None
    post_hoc: str | None = None
    post_hoc_fit: str | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown system family {self.family!r}: expected one of {FAMILIES}")
        if self.sampling is not None and self.sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {self.sampling!r}: expected one of {SAMPLINGS}")
        if self.unseen_routing is not None and self.unseen_routing not in ROUTINGS:
            raise ValueError(f"unknown routing {self.unseen_routing!r}: expected one of {ROUTINGS}")
        if (self.post_hoc is None) != (self.post_hoc_fit is None):
            raise ValueError("a post-hoc method needs its fit set (post_hoc_fit), and only then")
        if self.alpha is not None:
            object.__setattr__(self, "alpha", float(self.alpha))

    def with_post_hoc(self, method: str, fit: str) -> SystemSpec:
        """This system after a post-hoc method fitted on ``fit`` (notebook 05 §5)."""
        return dataclasses.replace(self, post_hoc=method, post_hoc_fit=fit)

    def columns(self) -> dict:
        """The spec as result-table columns."""
        return {c: getattr(self, c) for c in SPEC_COLUMNS}

    @property
    def trained(self) -> bool:
        """Whether any training step produced this system (everything but a zero-shot encoder)."""
        return self.family != "zero-shot"


class ModelSlot:
    """A system's model, loaded on first use and let go by :meth:`release`, so that notebooks
    hold one model at a time however many systems they evaluate (notebooks 04-06)."""

    def __init__(self, load: Callable[[], Any]):
        self._load = load
        self._model = None

    def get(self):
        """The model, loaded now if it is not in memory."""
        if self._model is None:
            self._model = self._load()
        return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def release(self) -> None:
        """Drop the model (it is loaded again if needed) and hand the freed heap back to the
        system (:func:`~xlir_utils.heap.release_dropped_models`)."""
        if self._model is not None:
            self._model = None
            release_dropped_models()


@dataclass(frozen=True)
class System:
    """Something to evaluate (notebook 04 §2): ``encode(texts, langs, kind)`` returns
    L2-normalised rows.

    ``label`` names one run and keys the embedding store (``"full-hybrid-s13"``); ``name`` is the
    system the run is a seed of (``"full-hybrid"``); ``fingerprint_of`` is what produced the
    embeddings (model, precision, batch budget, routing), or a function computing it from the
    model in ``slot`` (computed once, when first needed). ``slot`` holds the model of a system
    that loads it lazily (None: nothing to load or release).
    """

    label: str
    spec: SystemSpec
    fingerprint_of: str | Callable[[], str]
    encode: EncodeFn
    name: str = ""
    seed: int | None = None
    slot: ModelSlot | None = None

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.label)

    @property
    def fingerprint(self) -> str:
        """What produced the embeddings (keys the embedding store)."""
        if callable(self.fingerprint_of):
            object.__setattr__(self, "fingerprint_of", self.fingerprint_of())
        return self.fingerprint_of

    def columns(self) -> dict:
        """The run's label columns of a results row (``model`` = run, ``system`` = its system)."""
        return {"model": self.label, "system": self.name, "seed": self.seed, **self.spec.columns()}


def one_model_at_a_time(systems: Iterable[System]) -> Iterator[System]:
    """``systems`` in order, each model let go once the next system needs another one (the adapter
    routings of one run share a model): peak memory is one model (notebooks 04-06)."""
    current: ModelSlot | None = None
    try:
        for system in systems:
            if current is not None and system.slot is not current:
                current.release()
            current = system.slot
            yield system
    finally:
        if current is not None:
            current.release()
