"""Adapter names, configurations and the AdapterHub hook-up (notebook 03 §1)."""
from __future__ import annotations

TASK = "task"
LANG_CONFIG = "seq_bn_inv"  # MAD-X language adapter: Pfeiffer bottleneck + invertible adapter
TASK_CONFIG = "seq_bn"
FORMAT_VERSION = 2  # 2: per-language seeds from derived_seed (1 shared streams between languages)
MANIFEST = "xlir_adapters.json"
HUB_ADAPTERS = "{lang}/wiki@ukp"  # AdapterHub's MAD-X language adapters (xlm-roberta-base)


def lang_adapter_name(lang: str) -> str:
    """Adapter name of a language (``la_de``)."""
    return f"la_{lang}"


def enable_adapters(model):
    """Add AdapterHub support to the transformers model inside a SentenceTransformer (once, in
    place) and return that inner model, where adapters are added, trained and activated
    (notebook 03 §1)."""
    import adapters

    auto = model[0].auto_model
    if not hasattr(auto, "adapters_config"):
        adapters.init(auto)
    return auto


def lang_adapter_config(reduction_factor: int):
    """The MAD-X language adapter configuration (``seq_bn_inv``)."""
    from adapters import SeqBnInvConfig

    return SeqBnInvConfig(reduction_factor=reduction_factor)


def task_adapter_config(reduction_factor: int):
    """The task adapter configuration (``seq_bn``)."""
    from adapters import SeqBnConfig

    return SeqBnConfig(reduction_factor=reduction_factor)


def trainable_names(model) -> set[str]:
    """Names of the parameters that require gradients (notebook 03 §1 shows what a phase trains)."""
    return {n for n, p in model.named_parameters() if p.requires_grad}


class no_adapters:
    """Run the model with no adapter active (the active set-up is restored afterwards)."""

    def __init__(self, auto):
        self.auto = auto

    def __enter__(self):
        import logging

        self.saved = self.auto.active_adapters
        self.auto.active_adapters = None
        self.logger = logging.getLogger("adapters.model_mixin")  # "adapters available but none active"
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc):
        self.auto.active_adapters = self.saved
        self.logger.setLevel(self.level)
