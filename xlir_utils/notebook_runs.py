"""``python -m xlir_utils.notebook_runs`` (``make reproduce``): run the numbered notebooks in order,
each in a fresh ``xlir`` kernel, time each one into ``results/runtimes.csv``
(:mod:`xlir_utils.runtimes`) with its kernel's peak memory, and keep its executed copy.

The quick profile's executed copies go to ``notebooks/executed/`` (committed, so that a reader
sees every result on the repository page); other profiles' to ``build/notebooks/<profile>/``.
A copy is kept small (:func:`xlir_utils.executed_copy.slim`). A failing notebook stops the run; its executed part is
kept beside the others, so the error shows where it happened.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from . import paths, runtimes
from .cli import run
from .config import load, profile_name
from .environment import cpu_name
from .errors import XlirError
from .executed_copy import executed_dir, refresh_prose, slim
from .io_utils import atomic_write_bytes

KERNEL = "xlir"


def host() -> str:
    """``2-core AMD EPYC``: the machine a runtime was measured on."""
    return f"{os.cpu_count()}-core {cpu_name()}"


def _entries(folder: Path, skip: tuple[str, ...] = ()) -> int:
    return sum(1 for p in folder.iterdir() if p.name not in skip and not p.name.endswith(".lock")) \
        if folder.is_dir() else 0


def starting_point(profile: str) -> str:
    """What a run starts from, for its runtime's note: ``a fresh checkout``, or what it reuses
    (finished or interrupted runs, the evaluation store, lexicons, cached embeddings)."""
    cache = paths.cache_dir()
    found = {"runs": _entries(paths.runs_dir(profile), skip=("recipe-study",)),  # the recipe study is not rerun
             "systems in the evaluation store": _entries(cache / "eval" / profile),
             "lexicon files": _entries(cache / "lexicons" / profile),
             "cached embedding files": _entries(cache / "embeddings")}
    present = [f"{n} {what}" for what, n in found.items() if n]
    return "reusing " + ", ".join(present) if present else "a fresh checkout"


class KernelMemory:
    """The peak resident memory (RSS) of a notebook client's kernel and its child processes,
    sampled every ``interval`` seconds in a background thread while the block runs: what a
    reader's machine must hold for the notebook (``make reproduce``; ``benchmarks/notebook_memory.py``)."""

    def __init__(self, client: NotebookClient, interval: float = 0.2):
        self.client, self.interval, self.peak, self.samples = client, interval, 0, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _pid(self) -> int | None:
        process = getattr(getattr(getattr(self.client, "km", None), "provisioner", None), "process", None)
        return getattr(process, "pid", None)

    def _watch(self) -> None:
        while not self._done.wait(self.interval):
            pid = self._pid()
            if pid is None:
                continue
            try:
                kernel = psutil.Process(pid)
                rss = kernel.memory_info().rss + sum(c.memory_info().rss for c in kernel.children(recursive=True))
            except psutil.Error:
                continue
            self.peak, self.samples = max(self.peak, rss), self.samples + 1

    def __enter__(self) -> KernelMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def execute(path: Path, profile: str, out_dir: Path, kernel: str = KERNEL) -> tuple[float, int]:
    """Execute one notebook in ``profile`` (a fresh kernel, no timeout), write its slimmed copy to
    ``out_dir`` (also when a cell fails); returns its wall time in seconds and its kernel's peak
    RSS in bytes (:class:`KernelMemory`)."""
    nb = nbformat.read(path, as_version=4)
    os.environ["XLIR_PROFILE"] = profile  # the kernel inherits it; the notebooks' first cell reads it
    client = NotebookClient(nb, kernel_name=kernel, timeout=None, record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    try:
        with KernelMemory(client) as memory:
            client.execute()
    finally:
        seconds = time.perf_counter() - start
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes((nbformat.writes(slim(nb)) + "\n").encode(), out_dir / path.name)
    return seconds, memory.peak


def reproduce(profile: str, notebooks: list[Path] | None = None, kernel: str = KERNEL) -> list[dict]:
    """Run ``notebooks`` (default: every numbered notebook) in order in ``profile``; record each
    one's runtime and keep its executed copy (``make reproduce``). Returns one record per notebook."""
    notebooks = notebooks or sorted((paths.project_root() / "notebooks").glob("0*.ipynb"))
    cfg = load(profile)
    seeds = f"seed{'s' if len(cfg.seeds) > 1 else ''} {'/'.join(map(str, cfg.seeds))}"
    note = f"`make reproduce`, {seeds}, {starting_point(profile)}"
    out_dir, done = executed_dir(profile), []
    for path in notebooks:
        print(f"== {path.name} (XLIR_PROFILE={profile})", flush=True)
        try:
            seconds, peak = execute(path, profile, out_dir, kernel)
        except CellExecutionError as exc:
            raise XlirError(f"{path.name} failed in the {profile!r} profile ({exc.ename}: {exc.evalue}); its "
                            f"executed part, with the traceback, is in {out_dir / path.name}") from exc
        runtimes.record(profile, path.name[:2], seconds, peak_gb=peak / 2**30,
                        date=time.strftime("%Y-%m-%d", time.gmtime()), host=host(), note=note)
        print(f"   done in {runtimes.duration(seconds)}, peak memory {peak / 2**30:.2f} GB", flush=True)
        done.append({"notebook": path.name, "seconds": seconds, "peak_gb": peak / 2**30})
    runtimes.write_texts()
    for message in refresh_prose(profile)[1]:  # the copies' runtime rows, as the table now has them
        print("warning:", message, file=sys.stderr, flush=True)
    print(f"executed notebooks: {out_dir}; runtimes: results/runtimes.csv", flush=True)
    return done


def main(argv: list[str]) -> None:
    """``make reproduce``: ``[--profile P] [notebook ...]``."""
    parser = argparse.ArgumentParser(prog="python -m xlir_utils.notebook_runs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default=None, help="smoke | quick | paper (default: XLIR_PROFILE, else quick)")
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run (default: every numbered one)")
    args = parser.parse_args(argv)
    reproduce(profile_name(args.profile), [p.resolve() for p in args.notebooks] or None)


if __name__ == "__main__":
    sys.exit(run(main))
