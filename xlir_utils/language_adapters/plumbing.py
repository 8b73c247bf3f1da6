"""Adapter names, configurations and the AdapterHub hook-up (notebook 03 §1).

Every adapter of a profile lives in the transformer layers at and above
``profile.train.freeze_layers`` (``leave_out`` the lower ones): below that, every model of the
profile is the frozen base encoder, so its states are computed once (``encoders.prefix``) and
the variants train on top of them (``training.frozen_prefix``). A MAD-X language adapter also has
an *invertible* adapter on the input embeddings; it is trained with MLM and dropped for retrieval
(:func:`drop_invertible`), as Litschko et al. (2022) found best.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

TASK = "task"
LANG_CONFIG = "seq_bn_inv"  # MAD-X language adapter: Pfeiffer bottleneck + invertible adapter
TASK_CONFIG = "seq_bn"
FORMAT_VERSION = 3  # 3: adapters above the frozen prefix, cached-state MLM head, invertible dropped for retrieval
MANIFEST = "xlir_adapters.json"
HUB_ADAPTERS = "{lang}/wiki@ukp"  # AdapterHub's MAD-X language adapters (xlm-roberta-base)


def lang_adapter_name(lang: str) -> str:
    """Adapter name of a language (``la_de``)."""
    return f"la_{lang}"


class _NoIdleAdapterWarning(logging.Filter):
    """Drops AdapterHub's "adapters available but none are activated" warning: the kit runs the
    shared frozen layers and per-side routing groups with no adapter active on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "none are activated for the forward pass" not in record.getMessage()


def enable_adapters(model):
    """Add AdapterHub support to the transformers model inside a SentenceTransformer (once, in
    place) and return that inner model, where adapters are added, trained and activated
    (notebook 03 §1)."""
    # lazy: importing adapters loads transformers' model classes (seconds), and
    # xlir_utils.systems reads routings and manifests through this package without it
    import adapters

    mixin_logger = logging.getLogger("adapters.model_mixin")
    if not any(isinstance(f, _NoIdleAdapterWarning) for f in mixin_logger.filters):
        mixin_logger.addFilter(_NoIdleAdapterWarning())
    auto = model[0].auto_model
    if not hasattr(auto, "adapters_config"):
        adapters.init(auto)
    return auto


def lang_adapter_config(reduction_factor: int, leave_out: Sequence[int] = ()):
    """The MAD-X language adapter configuration (``seq_bn_inv``), absent from layers ``leave_out``."""
    from adapters import SeqBnInvConfig  # lazy, as in enable_adapters

    return SeqBnInvConfig(reduction_factor=reduction_factor, leave_out=list(leave_out))


def task_adapter_config(reduction_factor: float, leave_out: Sequence[int] = ()):
    """A bottleneck adapter (``seq_bn``): the task adapter, or the shared control adapter."""
    from adapters import SeqBnConfig  # lazy, as in enable_adapters

    return SeqBnConfig(reduction_factor=reduction_factor, leave_out=list(leave_out))


def drop_invertible(auto, name: str) -> bool:
    """Remove ``name``'s invertible adapter (its bottlenecks stay): the embeddings are then those of
    the base model. Returns whether there was one."""
    invertible = getattr(auto, "invertible_adapters", None)
    if invertible is not None and name in invertible:
        del invertible[name]
        return True
    return False


@contextmanager
def without_invertible(auto, name: str) -> Iterator[bool]:
    """Within the block, ``name``'s invertible adapter is taken out, as retrieval uses the adapter
    (:func:`drop_invertible`), then put back in its place: measuring the adapter both ways needs
    no copy of the model (notebook 03 §3). Yields whether there was one."""
    invertible = getattr(auto, "invertible_adapters", None)
    if invertible is None or name not in invertible:
        yield False
        return
    order = list(invertible.keys())
    module = invertible.pop(name)
    try:
        yield True
    finally:
        now = {**dict(invertible.items()), name: module}
        invertible.clear()
        for k in order + [k for k in now if k not in order]:  # the original order (state dicts follow it)
            if k in now:
                invertible[k] = now[k]


def adapter_parameters(auto, name: str) -> int:
    """Parameters of one adapter (its bottlenecks and, if any, its invertible adapter;
    notebook 03 §1)."""
    return sum(p.numel() for n, p in auto.named_parameters() if f".{name}." in n or n.endswith(f".{name}"))


class no_adapters:
    """Run the model with no adapter active (the active set-up is restored afterwards)."""

    def __init__(self, auto):
        self.auto = auto

    def __enter__(self):
        self.saved = self.auto.active_adapters
        self.auto.active_adapters = None
        self.logger = logging.getLogger("adapters.model_mixin")  # "adapters available but none active"
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc):
        self.auto.active_adapters = self.saved
        self.logger.setLevel(self.level)
