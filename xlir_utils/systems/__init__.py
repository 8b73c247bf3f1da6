"""Systems: what notebooks 04-06 evaluate (zero-shot encoders, finished runs, code-switched runs,
adapter variants).

* :mod:`~xlir_utils.systems.record` - a system as data (:class:`SystemSpec`, :class:`System`);
* :mod:`~xlir_utils.systems.labels` - descriptions, groups, order and colours from the columns;
* :mod:`~xlir_utils.systems.discovery` - a profile's baselines and finished runs;
* :mod:`~xlir_utils.systems.store` - the evaluation embedding store;
* :mod:`~xlir_utils.systems.evaluation` - evaluating systems and labelling their rows.
"""
from __future__ import annotations

import importlib

from .record import (
    FAMILIES,
    ROUTINGS,
    SAMPLINGS,
    SPEC_COLUMNS,
    EncodeFn,
    ModelSlot,
    System,
    SystemSpec,
    one_model_at_a_time,
)

# Discovery, the store and evaluation load torch, the encoders and AdapterHub; they are imported
# on first use so that reading tables and drawing figures (``make figures``) stays light.
_LAZY = {
    "encoder_system": "discovery", "baseline_systems": "discovery", "full_run_systems": "discovery",
    "adapter_run_systems": "discovery", "code_switching_systems": "discovery", "all_systems": "discovery",
    "embed_retrieval_set": "store", "embeddings_path": "store", "load_embeddings": "store",
    "label_rows": "evaluation", "evaluate_systems": "evaluation", "paired_against": "evaluation",
    "evaluate_tatoeba_systems": "evaluation", "LABEL_COLUMNS": "evaluation",
}

__all__ = ["FAMILIES", "ROUTINGS", "SAMPLINGS", "SPEC_COLUMNS", "EncodeFn", "ModelSlot", "System", "SystemSpec",
           "one_model_at_a_time", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
