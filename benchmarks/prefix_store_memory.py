"""Claim: sharing the frozen-prefix states (``XLIR_PREFIX_STORE_GB``, :mod:`xlir_utils.encoders.prefix`)
costs a notebook-04-style encoding pass about the resident memory of the plain pass (within 0.05 GB), which shares
nothing (``XLIR_PREFIX_STORE_GB=0``): the states live in a temporary file (the operating system's
file cache, not the process), one batch read at a time; sharing saves the trained runs time
(measured with ``--trained``). Settings: ``--settings 0,2`` (GB; the default).

Each setting runs in a fresh process and encodes, with no embedding cache, what notebook 04 §3
encodes for every system: the zero-shot encoder on ``--sets`` (default XQuAD-R and the MLQA-R dev
articles; add ``mlqa-r``, which notebook 04 encodes for the zero-shot encoder alone), then the
first ``--trained`` trained runs on XQuAD-R and the dev articles, one model at a time. Reported
per setting: the process's peak resident memory (``ru_maxrss``), the prefix states held at the end
(on disk), and the wall time. Prints JSON (committed as ``benchmarks/results/prefix_store_memory.json``)::

    .venv/bin/python benchmarks/prefix_store_memory.py --profile quick --trained 1
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

from xlir_utils import environment

LABELS = {"0": "0 GB (no sharing: the plain pass)", "2": "2 GB"}


def one_setting(profile_name: str, n_trained: int, set_names: list[str]) -> dict:
    from xlir_utils import config, data, systems
    from xlir_utils.encoders import prefix
    from xlir_utils.systems import record

    cfg = config.load(profile_name)
    every = systems.all_systems(cfg)
    picked = [every[0]] + [s for s in every if s.spec.trained][:n_trained]
    sets = {name: data.retrieval_set(cfg, name) for name in set_names}
    start = time.perf_counter()
    for system in record.one_model_at_a_time(picked):
        for name, rset in sets.items():
            if name == "mlqa-r" and system.spec.trained:
                continue  # notebook 04 evaluates the trained runs on the dev articles only
            system.encode(rset.queries.text.tolist(), rset.queries.lang.tolist(), "query", cache=False)
            system.encode(rset.candidate_texts(cfg.candidate_text), rset.candidates.lang.tolist(), "passage",
                          cache=False)
    return {"systems": [s.label for s in picked],
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
            "prefix_states_held_gb": round(prefix.stored_bytes() / 2**30, 3), "sets": set_names,
            "wall_s": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--trained", type=int, default=2)
    parser.add_argument("--settings", default="0,2", help="budgets in GB, comma-separated")
    parser.add_argument("--sets", default="xquad-r,mlqa-r-dev", help="retrieval sets, comma-separated")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a setting's own process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_setting(args.profile, args.trained, args.sets.split(","))))
        return
    results = []
    for gb in args.settings.split(","):
        label = LABELS.get(gb, f"{gb} GB")
        env = {**os.environ, "XLIR_PREFIX_STORE_GB": gb}
        out = subprocess.run([sys.executable, __file__, "--profile", args.profile, "--trained", str(args.trained),
                              "--sets", args.sets, "--one"], capture_output=True, text=True, check=True, env=env)
        results.append({"store": label, **json.loads(out.stdout.strip().splitlines()[-1])})
    import psutil

    claim = "shared prefix states, kept in a temporary file, cost about the resident memory of the plain pass (within 0.05 GB)" + (
        ", and save the trained runs time (they reuse the zero-shot encoder's states)" if args.trained else
        " (no trained run: the time of reuse is not measured here)")
    print(json.dumps({"claim": claim, "profile": args.profile, "trained_runs": args.trained, "machine": {
                          "cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                          "python": platform.python_version(), "cpu": environment.cpu_name()},
                      "settings": results}, indent=2))


if __name__ == "__main__":
    main()
