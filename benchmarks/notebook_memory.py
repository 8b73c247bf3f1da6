"""Claim: notebook 04 holds one model in memory at a time, so its peak memory does not grow with
the number of systems it evaluates.

Runs a notebook (default 04) of one or more checkouts of the kit, each in its own kernel, and
samples the kernel's resident memory (RSS, with its child processes) every 0.2 s
(``xlir_utils.notebook_runs.KernelMemory``, which ``make reproduce`` also records): the peak is
what a reader's machine must hold. Each checkout needs its own ``runs/<profile>/`` (run
notebooks 01-03 there first); the kernel, ``xlir``, imports each checkout's ``xlir_utils``
(``PYTHONPATH``). Give every checkout the same runs for a like-for-like comparison. Prints JSON (committed as
``benchmarks/results/notebook_memory.json``)::

    .venv/bin/python benchmarks/notebook_memory.py --profile smoke --checkout /path/to/older/checkout .
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient

from xlir_utils.notebook_runs import KernelMemory


def run_notebook(checkout: Path, notebook: str, profile: str, kernel: str, output_dir: Path | None = None) -> dict:
    """Execute ``checkout/notebooks/<notebook>*.ipynb`` in ``profile``; peak RSS and wall time.
    ``output_dir``: where the executed notebook is also written (as ``make reproduce`` writes it)."""
    path = next((checkout / "notebooks").glob(f"{notebook}*.ipynb"))
    nb = nbformat.read(path, as_version=4)
    os.environ["XLIR_PROFILE"] = profile
    os.environ["PYTHONPATH"] = str(checkout)  # the kernel imports this checkout's xlir_utils
    client = NotebookClient(nb, kernel_name=kernel, timeout=-1, resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    try:
        with KernelMemory(client) as memory:  # the kernel's RSS with its children, every 0.2 s
            client.execute()
    finally:
        if output_dir is not None:  # also when a cell failed: the executed part shows where
            output_dir.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, output_dir / path.name)
    wall = time.perf_counter() - start
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {"checkout": str(checkout), "commit": commit, "notebook": path.name, "profile": profile,
            "peak_rss_gb": round(memory.peak / 2**30, 3), "wall_s": round(wall, 1), "rss_samples": memory.samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkouts", nargs="*", default=["."], help="kit checkouts to run, in order")
    parser.add_argument("--checkout", action="append", default=[], help="a checkout run before the others")
    parser.add_argument("--notebook", default="04")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--kernel", default="xlir")
    parser.add_argument("--output-dir", type=Path, help="also write the executed notebooks here")
    args = parser.parse_args()
    checkouts = [Path(c).resolve() for c in [*args.checkout, *args.checkouts]]
    several = len(checkouts) > 1  # then each checkout's executed notebook goes to a folder of its own
    runs = [run_notebook(c, args.notebook, args.profile, args.kernel,
                         args.output_dir / c.name if several and args.output_dir else args.output_dir)
            for c in checkouts]
    print(json.dumps({"claim": "notebook 04's peak memory is bounded by one model",
                      "seeds": os.environ.get("XLIR_SEEDS", "the profile's"), "machine": {
        "cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version()}, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
