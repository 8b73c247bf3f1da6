"""Handing a dropped model's memory back to the operating system (notebooks 02-04: one model
at a time)."""
from __future__ import annotations

import ctypes
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
    (notebook 03 §§1, 3, 5 and 6, after each model it lets go; every training run, adapter
    variant, dev score and recipe-study run after its model, when it loaded one).

    A ``SentenceTransformer`` refers to itself through its model card (sentence-transformers
    registers the model with its card data), so reference counting alone never frees one: in one
    process, each smoke training run left 0.48 GB behind (1.59 GB after the first of six runs,
    4.04 GB after the sixth); collecting after each run kept it at 0.83 GB.
    """
    gc.collect()
    return_freed_heap()
