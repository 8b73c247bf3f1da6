"""Weight fingerprints computed once per model and set-up while no weight can change.

Hashing e5-small's weights (470 MB) takes a noticeable fraction of a second, and evaluating one
system asks for them a dozen times (every encode call keys its cache by them, a routed system once
per language group). Inside :func:`frozen_weights` a caller promises that no weight changes
(evaluation, never training), so :func:`model_fingerprint <xlir_utils.encoders.encode.model_fingerprint>` and
:func:`prefix_fingerprint <xlir_utils.encoders.prefix.prefix_fingerprint>` remember each
digest by the model and everything else they hash (the set-up: active adapters, configuration,
tokenizer), so a routing change still gives its own digest. Outside the block nothing is remembered
(notebooks 04 §3 and 05 §5 evaluate within it).
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_MEMO: dict | None = None


@contextmanager
def frozen_weights() -> Iterator[None]:
    """Within the block, weight fingerprints are computed once per model and set-up (nested
    blocks share the outer block's memory; it is forgotten when the outermost block ends)."""
    global _MEMO
    outer = _MEMO
    if outer is None:
        _MEMO = {}
    try:
        yield
    finally:
        _MEMO = outer


def remembered(kind: str, model: object, setup: str, compute: Callable[[], str]) -> str:
    """``compute()``, or its digest remembered for this ``model`` and ``setup`` inside
    :func:`frozen_weights`. The model is held by a weak reference: a released model is not kept
    alive, and a new model that happens to get its id is not taken for it."""
    if _MEMO is None:
        return compute()
    key = (kind, id(model), setup)
    hit = _MEMO.get(key)
    if hit is None or hit[0]() is not model:
        hit = _MEMO[key] = (weakref.ref(model), compute())
    return hit[1]
