"""Benchmark: how reproducible are the kit's embeddings and training runs, bit for bit?

Two parts, one JSON (``benchmarks/results/determinism.json``):

* ``encode``: the same XQuAD-R sentences encoded in three orders (input, reversed, shuffled) and
  as a subset, under the kit's batching (width buckets, :func:`xlir_utils.encoders.encode.token_batches`)
  and under the rule it replaced (each batch padded to its longest text), in fp32 and bfloat16
  autocast. Reports the largest difference of a text's embedding between groupings, and the
  speed (texts/s, median over the groupings) of each rule, run alternately in one process.
* ``train``: ``--runs`` smoke training runs of the hybrid recipe, seed 13, each in a fresh run
  folder, while one concurrent CPU job (a float32 matrix product loop in another process)
  competes for the cores, with 1 and with 2 torch threads, in the default precision and in fp32.
  Reports how many distinct loss logs the runs wrote and the largest weight difference to the
  first run.

    python benchmarks/determinism.py [--n-texts 600] [--runs 30] [--out benchmarks/results/determinism.json]
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file

from xlir_utils import config, paths
from xlir_utils.encoders import encode, load_encoder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode import candidate_sentences  # noqa: E402  (the encode benchmark's texts)

enc_mod = importlib.import_module("xlir_utils.encoders.encode")
BURNER = ("import numpy as np\na = np.random.default_rng(0).random((700, 700), dtype=np.float32)\n"
          "while True:\n    a = (a @ a); a /= np.abs(a).max()\n")


# ------------------------------------------------------------------------------- encode
def longest_in_batch_batches(lengths, batch_tokens, max_len=None, bucket=None):
    """The rule the kit used before width buckets: longest first, each batch padded to its longest text."""
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    batches, i = [], 0
    while i < len(order):
        rows = max(1, batch_tokens // max(int(lengths[order[i]]), 1))
        batches.append(order[i: i + rows])
        i += rows
    return batches


def encode_part(n_texts: int) -> dict:
    model = load_encoder("e5-small-offline", device="cpu")
    texts = candidate_sentences(["en", "de", "zh", "th", "ar", "ru"], n_texts)
    n = len(texts)
    rng = np.random.default_rng(0)
    orders = {"input": np.arange(n), "reversed": np.arange(n)[::-1].copy(), "shuffled": rng.permutation(n)}
    subset = np.sort(rng.permutation(n)[: n // 3])
    rules = {"bucket16 (now)": (enc_mod.token_batches, enc_mod.padded_width),
             "longest-in-batch (before)": (longest_in_batch_batches, lambda length, max_len, bucket=0: int(length))}
    real = (enc_mod.token_batches, enc_mod.padded_width)
    out: dict = {"n_texts": n, "langs": ["en", "de", "zh", "th", "ar", "ru"], "batch_tokens": enc_mod.CPU_BATCH_TOKENS}
    try:
        for precision in ("fp32", "bf16-autocast"):
            embs = {r: {} for r in rules}
            secs = {r: [] for r in rules}
            for name, order in [*orders.items(), ("subset", subset)]:
                for rule, (batches_fn, width_fn) in rules.items():  # alternate the rules
                    enc_mod.token_batches, enc_mod.padded_width = batches_fn, width_fn
                    t0 = time.perf_counter()
                    e = encode(model, [texts[i] for i in order], "passage", cache=False, show_progress=False,
                               precision=precision)
                    if name != "subset":
                        secs[rule].append(len(order) / (time.perf_counter() - t0))
                    full = np.full((n, e.shape[1]), np.nan, np.float32)
                    full[order] = e
                    embs[rule][name] = full
            for rule in rules:
                ref = embs[rule]["input"]
                diffs = {k: float(np.nanmax(np.abs(v - ref))) for k, v in embs[rule].items() if k != "input"}
                out.setdefault(precision, {})[rule] = {
                    "max_abs_diff_vs_input_order": diffs, "largest": max(diffs.values()),
                    "texts_per_s_median": round(statistics.median(secs[rule]), 1)}
    finally:
        enc_mod.token_batches, enc_mod.padded_width = real
    for precision in ("fp32", "bf16-autocast"):  # the kit's rule, 1 thread against 2
        two = encode(model, texts, "passage", cache=False, show_progress=False, precision=precision)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            one = encode(model, texts, "passage", cache=False, show_progress=False, precision=precision)
        finally:
            torch.set_num_threads(threads)
        out[precision]["bucket16 (now)"]["max_abs_diff_1_vs_2_threads"] = float(np.abs(one - two).max())
    return out


# -------------------------------------------------------------------------------- train
def train_once(root: Path, threads: int, precision: str) -> tuple[tuple[float, ...], dict]:
    """One smoke hybrid run in a fresh process (as a user starts one): its loss log and weights."""
    env = {**os.environ, "XLIR_THREADS": str(threads), "XLIR_PROFILE": "smoke"}
    subprocess.run([sys.executable, "-m", "xlir_utils.training", "--profile", "smoke", "--sampling", "hybrid",
                    "--seed", "13", "--runs-root", str(root), "--train", json.dumps({"precision": precision})],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = next(d for d in root.iterdir() if d.is_dir())
    log = tuple(np.loadtxt(run_dir / "train_log.csv", delimiter=",", skiprows=1, usecols=4, ndmin=1).tolist())
    return log, load_file(str(run_dir / "model" / "model.safetensors"))


def max_weight_diff(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a)


def train_part(runs: int, precisions: tuple[str, ...]) -> dict:
    profile = config.load("smoke")
    out: dict = {"profile": "smoke", "recipe": "hybrid, seed 13", "steps": profile.train.steps,
                 "freeze_layers": profile.train.freeze_layers, "runs_per_setting": runs // 2,
                 "each_run": "a fresh `python -m xlir_utils.training` process, fresh run folder",
                 "concurrent_job": "numpy float32 matmul loop in another process, 1 thread, for the whole part"}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    burner = subprocess.Popen([sys.executable, "-c", BURNER], env=env)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for precision in precisions:
                firsts = {}
                for threads in (1, 2):
                    logs, weights = [], []
                    for i in range(runs // 2):
                        log, w = train_once(Path(tmp) / f"{precision}-{threads}-{i}", threads, precision)
                        logs.append(log)
                        weights.append(w if not weights else None)  # keep the first run's weights only
                        if weights[-1] is None:
                            weights[-1] = max_weight_diff(w, weights[0])
                    firsts[threads] = weights[0]
                    out.setdefault(precision, {})[f"{threads}_threads"] = {
                        "runs": len(logs), "distinct_loss_logs": len(set(logs)),
                        "max_abs_weight_diff_vs_first": max([0.0, *weights[1:]])}
                    print(precision, threads, out[precision][f"{threads}_threads"], flush=True)
                out[precision]["max_abs_weight_diff_1_vs_2_threads"] = max_weight_diff(firsts[1], firsts[2])
    finally:
        burner.kill()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-texts", type=int, default=600)
    ap.add_argument("--runs", type=int, default=30, help="training runs per precision (half with 1 thread, half with 2)")
    ap.add_argument("--precisions", default="auto,fp32", help="training precisions, comma-separated")
    ap.add_argument("--skip", choices=["encode", "train"], default=None)
    ap.add_argument("--out", type=Path, default=paths.project_root() / "benchmarks" / "results" / "determinism.json")
    args = ap.parse_args()
    result = {"torch": torch.__version__, "cpu_count": os.cpu_count(),
              "load_avg_before": [round(x, 2) for x in os.getloadavg()]}
    if args.skip != "encode":
        result["encode"] = encode_part(args.n_texts)
        print(json.dumps(result["encode"], indent=1), flush=True)
    if args.skip != "train":
        result["train"] = train_part(args.runs, tuple(args.precisions.split(",")))
    text = json.dumps(result, indent=1)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
