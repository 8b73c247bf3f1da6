"""Handing a dropped model's memory back to the operating system (notebooks 02-04: one model
at a time)."""
from __future__ import annotations

import ctypes
import functools
import gc


def return_freed_heap() -> bool:
    """glibc's ``malloc_trim(0)``: give freed heap pages back to the system (True if some were).
    Without it the process keeps a released model's freed pages: 0.64 GB of resident memory
    between e5-small models in quick (``benchmarks/encode_memory.py``; notebook 04 §3). A no-op
    elsewhere than glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.malloc_trim(0))


def release_dropped_models() -> None:
    """Collect the reference cycles a dropped model sits in, then :func:`return_freed_heap`
    (notebook 03 §§1, 3, 5 and 6, after each model it lets go; training runs through
    :func:`releases_models`).

    A ``SentenceTransformer`` refers to itself through its model card (sentence-transformers
    registers the model with its card data), so reference counting alone never frees one: in one
    process, each smoke training run left 0.48 GB behind (1.59 GB after the first of six runs,
    4.04 GB after the sixth); collecting after each run kept it at 0.83 GB.
    """
    gc.collect()
    return_freed_heap()


def releases_models(fn):
    """Decorate a function that loads a model and drops it (a training run, a dev score):
    :func:`release_dropped_models` once it returns or raises (notebooks 02-03)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            release_dropped_models()

    return wrapper
