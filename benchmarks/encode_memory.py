"""Claim: handing the freed heap back after each released model (``malloc_trim``,
:func:`xlir_utils.heap.return_freed_heap`) lowers the memory a process holds between
models while it encodes system after system, one model at a time.

Each setting runs in a fresh process: the first ``--systems`` systems of the profile (the
zero-shot encoder, then trained runs), each encoding XQuAD-R's queries and candidates without
any cache, released before the next is loaded (as notebook 04 §3 does). Reported per setting:
the resident memory after each release and the process's peak (``ru_maxrss``). Prints JSON
(committed as ``benchmarks/results/encode_memory.json``)::

    .venv/bin/python benchmarks/encode_memory.py --profile quick --systems 6
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time


def one_setting(profile_name: str, n_systems: int, trim: bool) -> dict:
    import psutil

    from xlir_utils import config, data, systems
    from xlir_utils.systems import record

    if not trim:
        record.return_freed_heap = lambda: False  # the "before": freed heap stays with the process
    cfg = config.load(profile_name)
    rset = data.retrieval_set(cfg, "xquad-r")
    picked = systems.all_systems(cfg)[:n_systems]
    after, start = [], time.perf_counter()
    me = psutil.Process()
    for system in record.one_model_at_a_time(picked):
        system.encode(rset.queries.text.tolist(), rset.queries.lang.tolist(), "query", cache=False)
        system.encode(rset.candidate_texts(cfg.candidate_text), rset.candidates.lang.tolist(), "passage", cache=False)
        system.slot.release() if system.slot is not None else None
        after.append(round(me.memory_info().rss / 2**30, 3))
    return {"malloc_trim": trim, "systems": [s.label for s in picked], "rss_after_each_gb": after,
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
            "wall_s": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--systems", type=int, default=6)
    parser.add_argument("--one", choices=["trim", "keep"], help=argparse.SUPPRESS)  # a setting's own process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_setting(args.profile, args.systems, args.one == "trim")))
        return
    settings = []
    for one in ("keep", "trim"):
        out = subprocess.run([sys.executable, __file__, "--profile", args.profile, "--systems", str(args.systems),
                              "--one", one], capture_output=True, text=True, check=True)
        settings.append(json.loads(out.stdout.strip().splitlines()[-1]))
    import psutil

    print(json.dumps({"claim": "handing the freed heap back after each released model lowers the memory held between models",
                      "profile": args.profile, "dataset": "xquad-r", "machine": {
                          "cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                          "python": platform.python_version()}, "settings": settings}, indent=2))


if __name__ == "__main__":
    main()
