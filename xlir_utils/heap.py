"""Handing freed heap back to the operating system (notebook 04 §3: one model at a time)."""
from __future__ import annotations

import ctypes


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
