"""Training on two processes (torchrun, gloo on the CPU) equals training on one with the same
global batch: the same loss curve and final weights, hybrid batches kept whole, checkpoints
written by rank 0 and resumed under DDP. A tiny dropout-free BERT (the e5 tokenizer;
``tiny_encoder_dir`` in conftest.py) on the real smoke-profile MLQA-R pairs, through the real
entry point ``python -m xlir_utils.training``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xlir_utils import paths
from xlir_utils.training import distributed as D

RECIPE = {"steps": 4, "batch_size": 8, "max_seq_length": 32, "precision": "fp32", "freeze_layers": 0,
          "checkpoint_every": 2, "lr": 1e-3, "schedule": "constant", "warmup_steps": 1}


def test_shards_are_disjoint_and_cover_the_global_batch():
    batch = np.array([5, 9, 2, 7, 1, 3, 8, 4])
    parts = [D.shard(batch, D.DistContext(rank=r, world=4)) for r in range(4)]
    assert np.array_equal(np.concatenate(parts), batch)  # rank order is the global order
    assert all(len(p) == 2 for p in parts)
    assert np.array_equal(D.shard(batch, D.DistContext()), batch)
    with pytest.raises(ValueError, match="divisible by 3"):
        D.shard(batch, D.DistContext(rank=0, world=3))


@pytest.fixture(scope="module")
def tiny_model(tiny_encoder_dir) -> Path:
    """A 2-layer, 32-wide tiny encoder without dropout (so runs can agree exactly), saved to disk."""
    return tiny_encoder_dir(hidden_size=32, num_layers=2, dropout=0.0)


def _launch(nproc: int, model: Path, runs_root: Path, *extra: str, launcher: str = "torchrun") -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "XLIR_THREADS": "1",
           "XLIR_PROFILE": "smoke", "TOKENIZERS_PARALLELISM": "false"}
    if launcher == "torchrun":
        start = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    else:  # accelerate's multi-process launcher (torchrun underneath; gloo on a CPU)
        start = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", f"--num_processes={nproc}",
                 "--num_machines=1", "--mixed_precision=no", "--dynamo_backend=no"]
    cmd = [*start, "-m", "xlir_utils.training", "--profile", "smoke", "--sampling", "hybrid", "--seed", "13",
           "--encoder", str(model), "--runs-root", str(runs_root), "--train", json.dumps(RECIPE), *extra]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])


@pytest.fixture(scope="module")
def two_process_run(tiny_model, tmp_path_factory, shared_data) -> Path:
    """One plain two-process torchrun run of the recipe (the reference three tests compare with)."""
    root = tmp_path_factory.mktemp("torchrun-two")
    record = _launch(2, tiny_model, root)
    assert record["run"] == "full-hybrid-s13" and record["world_size"] == 2
    return root / "full-hybrid-s13"


def _weights(run_dir: Path) -> dict:
    from safetensors.numpy import load_file

    files = sorted(run_dir.glob("model/**/*.safetensors"))
    assert files, f"no saved weights under {run_dir}"
    return {f"{f.parent.name}/{k}": v for f in files for k, v in load_file(f).items()}


@pytest.mark.slow
def test_two_gloo_processes_train_as_one(tiny_model, two_process_run, tmp_path):
    one = _launch(1, tiny_model, tmp_path / "one")
    assert one["run"] == "full-hybrid-s13" and one["world_size"] == 1
    log1 = pd.read_csv(tmp_path / "one" / "full-hybrid-s13" / "train_log.csv")
    log2 = pd.read_csv(two_process_run / "train_log.csv")
    # the same global batches: kinds and languages drawn once per global step
    assert log1[["kind", "lang"]].equals(log2[["kind", "lang"]])
    np.testing.assert_allclose(log2.loss, log1.loss, atol=1e-5)
    assert log1.loss.iloc[-1] < log1.loss.iloc[0]  # it learned something: the comparison is not vacuous
    rec1 = json.loads((tmp_path / "one" / "full-hybrid-s13" / "run.json").read_text())
    rec2 = json.loads((two_process_run / "run.json").read_text())
    assert rec1["mono_share"] == rec2["mono_share"]  # each global batch counted once
    w1, w2 = _weights(tmp_path / "one" / "full-hybrid-s13"), _weights(two_process_run)
    assert w1.keys() == w2.keys()
    gap = max(float(np.abs(w1[k] - w2[k]).max()) for k in w1)
    assert gap < 1e-5, gap


@pytest.mark.slow
def test_accelerate_launch_trains_as_torchrun(tiny_model, two_process_run, tmp_path):
    via_accelerate = _launch(2, tiny_model, tmp_path / "acc", launcher="accelerate")
    assert via_accelerate["world_size"] == 2
    a = pd.read_csv(tmp_path / "acc" / "full-hybrid-s13" / "train_log.csv")
    b = pd.read_csv(two_process_run / "train_log.csv")
    np.testing.assert_allclose(a.loss, b.loss, atol=1e-6)


@pytest.mark.slow
def test_an_interrupted_two_process_run_resumes(tiny_model, two_process_run, tmp_path):
    stopped = _launch(2, tiny_model, tmp_path / "r", "--stop-after", "2")
    run = tmp_path / "r" / "full-hybrid-s13"
    assert stopped == {"interrupted_after": 2}
    assert (run / "checkpoint.pt").is_file() and not (run / "model").exists()
    assert not list(run.glob("*.tmp*"))  # rank 0 wrote it atomically; nothing half-written
    _launch(2, tiny_model, tmp_path / "r")
    assert not (run / "checkpoint.pt").exists()
    a = pd.read_csv(run / "train_log.csv")
    b = pd.read_csv(two_process_run / "train_log.csv")  # the same run, never interrupted
    np.testing.assert_allclose(a.loss, b.loss, atol=1e-6)
    wa, wb = _weights(run), _weights(two_process_run)
    assert max(float(np.abs(wa[k] - wb[k]).max()) for k in wa) < 1e-6


SHARD, N_TEXTS = 150, 1200  # eight shards, the last one short


def _encode_job(nproc: int, model: Path, texts: Path, out: Path, *extra: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "XLIR_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "xlir_utils.shard_encode", "--model", str(model), "--texts", str(texts), "--out", str(out),
           "--shard-size", str(SHARD), "--batch-tokens", "2048", *extra]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    return json.loads([line for line in res.stdout.splitlines() if line.startswith("{")][-1])


@pytest.mark.slow
def test_two_processes_encode_shards_as_one(tiny_model, tmp_path, shared_data):
    from xlir_utils import large_scale as L
    from xlir_utils.data import load_retrieval_set
    from xlir_utils.encoders.encode import encode
    from xlir_utils.encoders.registry import load_encoder

    sentences = load_retrieval_set("xquad-r").candidates.sentence.iloc[::10].head(N_TEXTS).tolist()  # 11 languages
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(s.replace("\n", " ") for s in sentences), encoding="utf-8")
    one = _encode_job(1, tiny_model, corpus, tmp_path / "one")
    two = _encode_job(2, tiny_model, corpus, tmp_path / "two", "--index", "hnsw")
    assert one["texts"] == two["texts"] == N_TEXTS and one["shards"] == 8 and two["processes"] == 2
    a = L.load_shards(tmp_path / "one", N_TEXTS, SHARD)
    b = L.load_shards(tmp_path / "two", N_TEXTS, SHARD)
    assert np.array_equal(a, b)  # the same shards, encoded alike: identical bits
    model = load_encoder(str(tiny_model), device="cpu")
    direct = encode(model, [s.replace("\n", " ") for s in sentences], "passage", batch_tokens=2048, cache=False,
                    show_progress=False)
    np.testing.assert_allclose(a, direct, atol=1e-5)  # batches differ across shard borders; padding is masked
    assert two["recall@100_vs_flat"] >= 0.9 and (tmp_path / "two" / "index-hnsw.faiss").is_file()
    # a lost shard and a damaged one: loading names the file; running the job again restores them
    (tmp_path / "two" / "shard-000003.npz").unlink()
    (tmp_path / "two" / "shard-000005.npz").write_bytes(b"not a shard")
    with pytest.raises(FileNotFoundError, match="shard-000003"):
        L.load_shards(tmp_path / "two", N_TEXTS, SHARD)
    _encode_job(2, tiny_model, corpus, tmp_path / "two", "--index", "none")
    assert np.array_equal(L.load_shards(tmp_path / "two", N_TEXTS, SHARD), a)


ADAPTER_SCRIPT = '''
import json, sys
from pathlib import Path
import torch
from xlir_utils import config
from xlir_utils import language_adapters as la
from xlir_utils.data import build_pairs, load_retrieval_set
from xlir_utils.encoders.registry import load_encoder
from xlir_utils.training import distributed as D, make_spec, train_run

ctx = D.init_from_env()
model_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
pairs = build_pairs(load_retrieval_set("xquad-r", articles=1))  # fully parallel: en and de everywhere
pairs = pairs[pairs.query_lang.isin(["en", "de"]) & pairs.passage_lang.isin(["en", "de"])].reset_index(drop=True)
recipe = json.loads(sys.argv[3])
profile = config.load("smoke").replace(train=recipe)
model = load_encoder(str(model_dir), device="cpu")
model.max_seq_length = recipe["max_seq_length"]
routing = la.prepare_variant(model, "joint-per-side", {}, profile, 13, ["de", "en"], ["de", "en"])
spec = make_spec("joint", str(model_dir), "hybrid", profile.train, 13, pairs)

def save(m, folder):
    folder.mkdir(parents=True)
    torch.save({n: p.detach() for n, p in m.named_parameters() if p.requires_grad}, folder / "trainable.pt")

train_run(model, pairs, spec, out, embed_fn=la.routed_embed_fn(routing), save_fn=save, show_progress=False)
'''


@pytest.mark.slow
def test_per_side_adapters_train_under_ddp_with_unused_parameters(tiny_model, tmp_path, shared_data):
    """X-X batches in one language leave the other language's adapter without a gradient: DDP must
    accept it, and two processes must still train exactly as one."""
    import torch

    script = tmp_path / "adapters_ddp.py"
    script.write_text(ADAPTER_SCRIPT)
    recipe = {**RECIPE, "steps": 4, "lr": 1e-3}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "XLIR_THREADS": "1",
           "XLIR_PROFILE": "smoke", "TOKENIZERS_PARALLELISM": "false",
           # the checkout's runs hold an MLM head that would change the set-up; its cache is shared
           "XLIR_ROOT": str(tmp_path / "project"), "XLIR_CACHE_DIR": str(paths.cache_dir())}
    for n in (1, 2):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", str(script),
               str(tiny_model), str(tmp_path / f"run{n}"), json.dumps(recipe)]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-4000:]
    log1, log2 = (pd.read_csv(tmp_path / f"run{n}" / "train_log.csv") for n in (1, 2))
    assert (log1.kind == "mono").any() and (log1.kind == "cross").any()  # some steps leave an adapter unused
    np.testing.assert_allclose(log2.loss, log1.loss, atol=1e-5)
    w1, w2 = (torch.load(tmp_path / f"run{n}" / "model" / "trainable.pt") for n in (1, 2))
    assert any(".la_de." in k for k in w1) and any(".la_en." in k for k in w1)
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-5
