"""Faults the kit survives: a damaged finished run, two writers of one run or store, stale swap
leftovers that are not folders, a full disk, a read-only cache and a kill during a checkpoint
write. Training runs use the tiny encoder (``tiny_encoder`` in conftest.py) on real MLQA-R pairs;
a second process is a subprocess, so that its locks are really another process's. A full disk
and a read-only cache are real (small tmpfs mounts) where the tests run as root and may mount,
else the write is made to fail with the same error."""
from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import types
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import stand_in_system

from xlir_utils import config, io_utils
from xlir_utils import language_adapters as la
from xlir_utils.data import build_pairs, load_retrieval_set
from xlir_utils.errors import BusyError, WriteError
from xlir_utils.file_digests import sha256_of
from xlir_utils.io_utils import atomic_replace_dir, atomic_write_bytes, atomic_write_torch, recover_dir
from xlir_utils.systems.store import _store_key, embed_retrieval_set, embeddings_path
from xlir_utils.training import finished_record, finished_runs, make_spec, set_trainable, train_full, train_run
from xlir_utils.training import loop as training_loop
from xlir_utils.training import runs as training_runs

pytestmark = pytest.mark.slow

ENCODER = "tiny-encoder"  # the name the run specs record
SAFETENSORS = "model/model.safetensors"


@pytest.fixture(scope="module")
def pairs(shared_data):
    return build_pairs(load_retrieval_set("mlqa-r", articles=3))


@pytest.fixture
def new_model(tiny_encoder):
    """A fresh tiny encoder set up for full fine-tuning: the same initial weights at every call."""
    def make():
        model = tiny_encoder(max_seq_length=32)
        set_trainable(model, freeze_word_embeddings=True)
        return model

    return make


def _tiny(steps: int, **kw) -> config.TrainConfig:
    return dataclasses.replace(config.load("smoke").train, steps=steps, batch_size=8, max_seq_length=32, **kw)


def _same_weights(a, b) -> bool:
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    return pa.keys() == pb.keys() and all(torch.equal(pa[n], pb[n]) for n in pa)


def _python(code: str, *args: str) -> subprocess.Popen:
    """A child Python process running ``code`` (the checkout on its path); its first line is read by the caller."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent.parent),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _first_line(proc: subprocess.Popen, expected: str) -> None:
    line = proc.stdout.readline().strip()
    if line != expected:
        proc.kill()
        pytest.fail(f"child process said {line!r}, not {expected!r}: {proc.communicate()[1][-3000:]}")


@contextmanager
def _holding_locks(*paths: Path):
    """Another process holding ``exclusive_lock`` of each path until the block ends; yields its pid."""
    proc = _python("""
        import sys
        from contextlib import ExitStack
        from xlir_utils.io_utils import exclusive_lock
        with ExitStack() as stack:
            for p in sys.argv[1:]:
                stack.enter_context(exclusive_lock(p, "held"))
            print("held", flush=True)
            sys.stdin.read()  # until the test closes stdin
    """, *map(str, paths))
    try:
        _first_line(proc, "held")
        yield proc.pid
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


# ------------------------------------------------------------------ a small real filesystem (root only)
def _mount_tmpfs(folder: Path, size: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, check=False)
    return done.returncode == 0


def _umount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """A folder holding ``previous.bin`` (b"previous") on a disk with no space left: a full 256 KiB
    tmpfs where possible, else every write's flush fails with ENOSPC."""
    folder = tmp_path / "disk"
    mounted = _mount_tmpfs(folder, "256k")
    folder.mkdir(exist_ok=True)
    atomic_write_bytes(b"previous", folder / "previous.bin")
    if mounted:
        try:
            with open(folder / "filler", "wb", buffering=0) as handle:
                while True:
                    handle.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    else:
        def no_space(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(io_utils, "_fsync_file", no_space)
    yield folder
    if mounted:
        _umount(folder)


@pytest.fixture
def read_only_folder(tmp_path, monkeypatch):
    """A folder holding ``previous.bin`` (b"previous") that cannot be written: a read-only tmpfs
    where possible, a 0555 folder for a user other than root, else every new file fails with EROFS."""
    folder = tmp_path / "ro"
    mounted = _mount_tmpfs(folder, "1m")
    folder.mkdir(exist_ok=True)
    atomic_write_bytes(b"previous", folder / "previous.bin")
    if mounted:
        remount = subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True, check=False)
        assert remount.returncode == 0, remount.stderr
    elif os.geteuid() != 0:
        folder.chmod(0o555)
    else:
        real = io_utils.tempfile.mkstemp

        def read_only(*args, dir=None, **kwargs):
            if dir is not None and Path(dir).is_relative_to(folder):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
            return real(*args, dir=dir, **kwargs)

        monkeypatch.setattr(io_utils.tempfile, "mkstemp", read_only)
    yield folder
    if mounted:
        _umount(folder)
    else:
        folder.chmod(0o755)


# ------------------------------------------------------------------ a damaged finished run
def test_damaged_finished_run_is_reported_and_trained_again_to_the_same_weights(pairs, tmp_path, new_model, caplog):
    cfg = _tiny(3, checkpoint_every=100)
    spec = make_spec("d", ENCODER, "hybrid", cfg, 5, pairs)
    clean = train_run(new_model(), pairs, spec, tmp_path / "clean", show_progress=False)
    run = tmp_path / "run"
    first = train_run(new_model(), pairs, spec, run, show_progress=False)
    assert first["files"][SAFETENSORS] == clean["files"][SAFETENSORS]  # the digests were recorded at finish
    assert "files" not in first["spec"] and first["digest"] == spec.digest()  # beside the spec, not in it
    model_file = run / SAFETENSORS
    model_file.write_bytes(model_file.read_bytes()[: model_file.stat().st_size // 2])

    with caplog.at_level(logging.WARNING):
        assert [p.name for p in finished_runs(tmp_path)] == ["clean"]  # a cheap size check leaves it out
    assert f"left out run folder {run}" in caplog.text
    caplog.clear()
    retrained = new_model()
    with caplog.at_level(logging.WARNING):
        record = train_run(retrained, pairs, spec, run, show_progress=False)
    assert f"run folder {run} is damaged" in caplog.text and SAFETENSORS in caplog.text
    assert caplog.text.count("is damaged") == 1
    assert record["finished"] and record["files"][SAFETENSORS] == clean["files"][SAFETENSORS]
    assert sha256_of(model_file) == sha256_of(tmp_path / "clean" / SAFETENSORS)
    assert not _same_weights(retrained, new_model())  # it was trained, not loaded
    assert [p.name for p in finished_runs(tmp_path)] == ["clean", "run"]

    # a missing file is damage too; the run is then marked unfinished until it is trained again
    (run / "model" / "modules.json").unlink()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert finished_record(run, spec.digest()) is None
    assert "model/modules.json is missing" in caplog.text
    saved = json.loads((run / "run.json").read_text())
    assert saved["finished"] is False and saved["damaged"] == ["model/modules.json is missing"]


def test_a_run_recorded_before_digests_is_accepted_and_gets_them(pairs, tmp_path, new_model):
    spec = make_spec("o", ENCODER, "X-Y", _tiny(1), 3, pairs)
    run = tmp_path / "o"
    record = train_run(new_model(), pairs, spec, run, show_progress=False)
    older = {k: v for k, v in record.items() if k != "files"}
    (run / "run.json").write_text(json.dumps(older))
    reused = train_run(None, pairs, spec, run, show_progress=False)  # no model: reused, not trained
    assert reused == record and json.loads((run / "run.json").read_text()) == record


def test_a_damaged_language_adapter_is_not_reused_nor_built_upon(pairs, tmp_path, monkeypatch, caplog):
    """Language adapters record the digests of ``adapter/`` as training runs do of ``model/``."""
    from xlir_utils.errors import DamagedFileError
    from xlir_utils.training.spec import record_files

    root = tmp_path / "language-adapters"
    for lang in ("de", "en"):
        (root / lang / "adapter").mkdir(parents=True)
        (root / lang / "adapter" / "pytorch_adapter.bin").write_bytes(bytes(range(256)) * 4)
        record = {"digest": f"la-{lang}", "finished": True, "heldout": {},
                  "files": record_files(root / lang, ("adapter",))}
        (root / lang / "run.json").write_text(json.dumps(record))
    assert finished_record(root / "de", "la-de", ("adapter",)) is not None
    (root / "de" / "adapter" / "pytorch_adapter.bin").write_bytes(bytes(range(256)) * 3)
    monkeypatch.setattr(la.variants, "head_record", lambda profile: {"chosen": "final layer"})
    monkeypatch.setattr(la.variants, "load_encoder", lambda *a, **k: pytest.fail("built on a damaged adapter"))
    cfg = config.load("smoke")
    with pytest.raises(DamagedFileError, match=r"language adapter 'de' in .*de is damaged .*train_language_adapters"):
        la.train_variant(cfg, "mlm-per-side", pairs, seed=13, lang_dir=root, run_dir=tmp_path / "v",
                         languages=("de", "en"), show_progress=False)
    with caplog.at_level(logging.WARNING):
        assert finished_record(root / "de", "la-de", ("adapter",)) is None  # so it is trained again
    assert f"run folder {root / 'de'} is damaged" in caplog.text


# ------------------------------------------------------------------ one writer per run folder and store
def test_a_second_writer_of_a_run_gets_busy_error(pairs, tmp_path, new_model, monkeypatch):
    cfg = config.load("smoke").replace(train={"steps": 1, "batch_size": 8, "max_seq_length": 32})
    spec = make_spec("t", ENCODER, "X-Y", cfg.train, 1, pairs)
    run = tmp_path / "runs" / "t"
    full = tmp_path / "runs" / "full-X-Y-s13"
    variant = tmp_path / "runs" / la.variant_run_name("task-only", 13)
    adapter = tmp_path / "language-adapters" / "de"
    monkeypatch.setattr(training_runs, "load_encoder", lambda *a, **k: pytest.fail("loaded a model while busy"))
    monkeypatch.setattr(la.variants, "load_encoder", lambda *a, **k: pytest.fail("loaded a model while busy"))
    with _holding_locks(run, full, variant, adapter) as pid:
        with pytest.raises(BusyError, match=rf"^run t is being written by process {pid} .*wait for it to finish, "
                                            rf"or stop it \(kill {pid}\)"):
            train_run(new_model(), pairs, spec, run, show_progress=False)
        assert list(run.iterdir()) == []  # nothing written
        with pytest.raises(BusyError, match=f"run full-X-Y-s13 is being written by process {pid}"):
            train_full(cfg, "X-Y", pairs, runs_root=tmp_path / "runs", show_progress=False)
        with pytest.raises(BusyError, match=f"run adapters-task-only-s13 is being written by process {pid}"):
            la.train_variant(cfg, "task-only", pairs, seed=13, run_dir=variant, lang_dir=tmp_path / "none",
                             show_progress=False)
        head = types.SimpleNamespace(digest="head")  # never used: the lock is taken first
        with pytest.raises(BusyError, match=f"the language adapter de is being written by process {pid}"):
            la.train_language_adapter(None, head, "de", ["Ein Satz."], ["Noch einer."], cfg, adapter,
                                      show_progress=False)
    # the holder is gone, and so is its lock
    assert train_run(new_model(), pairs, spec, run, show_progress=False)["finished"]


def test_a_second_encoder_of_a_system_waits_and_reuses_what_the_first_stored(store_project, xquad_article, caplog):
    system = stand_in_system()
    path = embeddings_path("smoke", system.label, xquad_article.name)
    key = _store_key(system, xquad_article, "sentence")
    go = store_project / "go"
    proc = _python("""
        import sys, time
        from pathlib import Path
        import numpy as np
        from xlir_utils.io_utils import exclusive_lock
        from xlir_utils.keyed_arrays import write_keyed_arrays
        path, key, nq, nc, go = sys.argv[1:]
        with exclusive_lock(Path(path).parent, "the evaluation store of sys"):
            print("held", flush=True)
            while not Path(go).exists():
                time.sleep(0.02)
            time.sleep(0.5)  # the other process is waiting for the lock by now
            write_keyed_arrays(path, key, queries=np.ones((int(nq), 16), np.float32),
                               candidates=np.ones((int(nc), 16), np.float32))
    """, str(path), key, str(len(xquad_article.queries)), str(len(xquad_article.candidates)), str(go))
    _first_line(proc, "held")
    go.touch()
    with caplog.at_level(logging.INFO, logger="xlir_utils.io_utils"):
        q, c = embed_retrieval_set(system, xquad_article, "sentence", "smoke")
    assert proc.wait(timeout=60) == 0
    assert f"waiting for process {proc.pid}" in caplog.text
    assert system.encode.calls == 0 and (q == 1).all() and (c == 1).all()  # the other process's vectors


# ------------------------------------------------------------------ leftovers of interrupted swaps
def test_stale_leftovers_that_are_not_folders_do_not_block_saving(pairs, tmp_path, new_model):
    run = tmp_path / "s"
    run.mkdir()
    (run / "model.old").write_text("a file where a folder was expected")
    (run / "model.tmp").symlink_to(tmp_path / "nowhere")  # a dangling symlink
    record = train_run(new_model(), pairs, make_spec("s", ENCODER, "X-Y", _tiny(1), 1, pairs), run,
                       show_progress=False)
    assert record["finished"] and (run / SAFETENSORS).is_file()
    assert sorted(p.name for p in run.iterdir()) == ["model", "run.json", "train_log.csv"]
    # a plain file named like the old copy, while the folder is missing, is not put back either
    missing = tmp_path / "gone"
    (tmp_path / "gone.old").write_text("not a folder")
    recover_dir(missing)
    assert not missing.exists() and not (tmp_path / "gone.old").exists()


def test_a_folder_is_built_in_a_folder_of_its_own_process(tmp_path):
    seen = []

    def write(build):
        seen.append(build)
        build.mkdir()
        (build / "weights.bin").write_text("new")

    atomic_replace_dir(tmp_path / "model", write)
    work = seen[0].parent
    assert seen[0].name == "model" and work.parent == tmp_path
    assert io_utils._TEMP.match(work.name) and work.name.startswith(f".model.{os.getpid()}.")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_kill_between_the_two_renames_of_a_swap_is_undone(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_text("previous")
    proc = _python("""
        import sys, time
        from pathlib import Path
        from xlir_utils import io_utils
        real = Path.rename
        def rename(self, target):
            if Path(target).name == "model" and self.name == "model":  # the second rename
                print("between", flush=True)
                time.sleep(600)
            return real(self, target)
        Path.rename = rename
        def write(build):
            build.mkdir()
            (build / "weights.bin").write_text("new")
        io_utils.atomic_replace_dir(sys.argv[1], write)
    """, str(model))
    _first_line(proc, "between")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not model.exists() and (tmp_path / "model.old").is_dir()
    recover_dir(model)  # what the next save or reuse does first
    assert (model / "weights.bin").read_text() == "previous"
    atomic_replace_dir(model, lambda build: (build.mkdir(), (build / "weights.bin").write_text("next")))
    assert (model / "weights.bin").read_text() == "next"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # the killed build folder is swept


# ------------------------------------------------------------------ a full disk, a read-only cache
def test_a_full_disk_names_the_file_and_the_fix_and_loses_nothing(full_disk, store_project, xquad_article,
                                                                   monkeypatch, caplog):
    path = full_disk / "previous.bin"
    with pytest.raises(WriteError) as info:
        atomic_write_torch({"step": 2, "weights": torch.zeros(100_000)}, path)
    message = str(info.value)
    assert str(path) in message and "the disk is full" in message
    assert "free some space" in message and "XLIR_CACHE_DIR" in message and "XLIR_ROOT" in message
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.ENOSPC
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in full_disk.iterdir() if p.name != "filler") == ["previous.bin"]
    # the evaluation store only skips storing
    monkeypatch.setenv("XLIR_CACHE_DIR", str(full_disk))
    system = stand_in_system()
    with caplog.at_level(logging.WARNING):
        q, _ = embed_retrieval_set(system, xquad_article, "sentence", "smoke")
    assert q.shape[0] == len(xquad_article.queries) and "could not store" in caplog.text
    assert "the disk is full" in caplog.text


def test_a_model_folder_on_a_full_disk_fails_with_the_fix_whatever_the_writer_raised(full_disk):
    """torch reports a full disk as ``RuntimeError: ... unexpected pos``; the save names the fix."""
    if shutil.disk_usage(full_disk).free >= 2**20:
        pytest.skip("no tmpfs could be mounted here to fill")
    model = full_disk / "model"

    def write(build):
        build.mkdir()
        torch.save({"weights": torch.zeros(100_000)}, build / "adapter.bin")

    with pytest.raises(WriteError) as info:
        atomic_replace_dir(model, write)
    assert str(model) in str(info.value) and "the disk is full" in str(info.value)
    assert "free some space" in str(info.value)
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler", "previous.bin"]


def test_a_read_only_cache_names_the_folder_and_the_fix(read_only_folder, store_project, xquad_article,
                                                        monkeypatch, caplog):
    path = read_only_folder / "previous.bin"
    with pytest.raises(WriteError) as info:
        atomic_write_bytes(b"new", path)
    message = str(info.value)
    assert f"could not write {path}: {read_only_folder} is read-only or not writable" in message
    assert "XLIR_CACHE_DIR" in message and "XLIR_ROOT" in message
    assert info.value.errno in (errno.EROFS, errno.EACCES) and info.value.__cause__ is not None
    assert path.read_bytes() == b"previous"
    monkeypatch.setenv("XLIR_CACHE_DIR", str(read_only_folder))
    system = stand_in_system()
    with caplog.at_level(logging.WARNING):
        q, _ = embed_retrieval_set(system, xquad_article, "sentence", "smoke")
    assert q.shape[0] == len(xquad_article.queries) and "could not store" in caplog.text


# ------------------------------------------------------------------ a kill during a checkpoint write
def test_sigkill_during_a_checkpoint_write_then_a_rerun_resumes_to_the_same_weights(pairs, tmp_path, new_model,
                                                                                   tiny_encoder_dir, monkeypatch):
    cfg = _tiny(4, checkpoint_every=1)
    spec = make_spec("k", ENCODER, "hybrid", cfg, 11, pairs)
    run = tmp_path / "k"
    pairs.to_pickle(tmp_path / "pairs.pkl")
    proc = _python("""
        import dataclasses, sys, time
        from pathlib import Path
        import pandas as pd
        from xlir_utils import config, io_utils
        from xlir_utils.encoders.registry import load_encoder
        from xlir_utils.training import make_spec, set_trainable, train_run
        run, encoder, pairs = sys.argv[1:]
        pairs = pd.read_pickle(pairs)
        real, writes = io_utils._fsync_file, []
        def fsync(path):  # the temporary checkpoint is complete, not yet renamed over checkpoint.pt
            if path.name.startswith(".checkpoint.pt."):
                writes.append(path)
                if len(writes) == 2:
                    print("writing", flush=True)
                    time.sleep(600)
            real(path)
        io_utils._fsync_file = fsync
        model = load_encoder(encoder, device="cpu")
        model.max_seq_length = 32
        set_trainable(model, freeze_word_embeddings=True)
        cfg = dataclasses.replace(config.load("smoke").train, steps=4, batch_size=8, max_seq_length=32,
                                  checkpoint_every=1)
        train_run(model, pairs, make_spec("k", "tiny-encoder", "hybrid", cfg, 11, pairs), Path(run),
                  show_progress=False)
    """, str(run), str(tiny_encoder_dir()), str(tmp_path / "pairs.pkl"))
    straight = new_model()  # trained here while the child starts
    train_run(straight, pairs, spec, tmp_path / "straight", show_progress=False)
    _first_line(proc, "writing")
    with pytest.raises(BusyError, match=f"run k is being written by process {proc.pid}"):
        train_run(new_model(), pairs, spec, run, show_progress=False)  # the child holds the run
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    orphans = [p.name for p in run.iterdir() if p.name.startswith(".checkpoint.pt.")]
    assert len(orphans) == 1 and (run / "checkpoint.pt").is_file()

    resumed_from, real_resume = [], training_loop._resume

    def resume(*args):
        step, log = real_resume(*args)
        resumed_from.append(step)
        return step, log

    monkeypatch.setattr(training_loop, "_resume", resume)
    resumed = new_model()
    record = train_run(resumed, pairs, spec, run, show_progress=False)
    assert resumed_from == [1]  # from the checkpoint of step 1, the last one written whole
    assert record["finished"] and _same_weights(straight, resumed)
    assert sha256_of(run / SAFETENSORS) == sha256_of(tmp_path / "straight" / SAFETENSORS)
    assert sorted(p.name for p in run.iterdir()) == ["model", "run.json", "train_log.csv"]  # the orphan is swept
    assert pd.read_csv(run / "train_log.csv").step.tolist() == [1, 2, 3, 4]  # step 1 logged by the killed process
