"""Atomic writes and crash recovery: interrupted writes, kills mid-write and mid-swap."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from xlir_utils import io_utils
from xlir_utils.io_utils import (
    atomic_replace_dir,
    atomic_write_bytes,
    atomic_write_json,
    recover_dir,
    sweep_stale_temps,
)


def test_interrupted_write_keeps_the_old_file_and_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "results.csv"
    atomic_write_bytes(b"old", path)

    def interrupted(fd):
        raise KeyboardInterrupt  # the user pressed ^C while the new bytes were being flushed

    monkeypatch.setattr(io_utils.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(b"new" * 1000, path)
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def _start_stuck_writer(path):
    """A child process that starts an atomic write of ``path`` and hangs before the rename."""
    code = textwrap.dedent(f"""
        import os, sys, time
        from xlir_utils import io_utils
        def stuck(fd):
            print("writing", flush=True)
            time.sleep(600)
        io_utils.os.fsync = stuck
        io_utils.atomic_write_bytes(b"x" * 1_000_000, {str(path)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    return proc


def test_sigkill_mid_write_orphans_a_temp_that_the_next_write_sweeps(tmp_path):
    path = tmp_path / "checkpoint.pt"
    atomic_write_bytes(b"old checkpoint", path)
    proc = _start_stuck_writer(path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    orphans = [p for p in tmp_path.iterdir() if p.name != "checkpoint.pt"]
    assert len(orphans) == 1 and orphans[0].name.startswith(".checkpoint.pt.") and orphans[0].stat().st_size
    assert path.read_bytes() == b"old checkpoint"
    atomic_write_bytes(b"new checkpoint", path)  # a plain rerun writes again ...
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # ... and the orphan is gone
    assert path.read_bytes() == b"new checkpoint"


def test_a_live_writers_temp_file_is_left_alone(tmp_path):
    path = tmp_path / "a.bin"
    proc = _start_stuck_writer(path)
    try:
        assert sweep_stale_temps(tmp_path) == []
        assert len(list(tmp_path.iterdir())) == 1
    finally:
        proc.kill()
        proc.wait(timeout=30)
    (tmp_path / "notes.tmp").write_text("not ours")  # not the kit's pattern: never touched
    assert len(sweep_stale_temps(tmp_path)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["notes.tmp"]


def _fill(folder, text):
    folder.mkdir(parents=True)
    (folder / "weights.bin").write_text(text)


def test_kill_between_the_two_renames_of_a_swap_is_undone(tmp_path):
    """The state a kill leaves after ``model -> model.old`` and before ``model.tmp -> model``."""
    model = tmp_path / "model"
    _fill(tmp_path / "model.old", "previous")
    _fill(tmp_path / "model.tmp", "half")
    recover_dir(model)
    assert (model / "weights.bin").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_stale_old_and_tmp_folders_do_not_block_the_next_save(tmp_path):
    """A kill after the swap but before the clean-up used to fail every later save (ENOTEMPTY)."""
    model = tmp_path / "model"
    _fill(model, "current")
    _fill(tmp_path / "model.old", "stale")
    _fill(tmp_path / "model.tmp", "half-written copy")
    atomic_replace_dir(model, lambda tmp: _fill(tmp, "new"))
    assert (model / "weights.bin").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    def failing(tmp):
        _fill(tmp, "bad")
        raise RuntimeError("the writer failed half-way")

    with pytest.raises(RuntimeError):
        atomic_replace_dir(model, failing)
    assert (model / "weights.bin").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_json_numbers_and_mode(tmp_path):
    path = tmp_path / "r.json"
    atomic_write_json({"a": np.float32(0.5), "b": np.int64(3), "c": np.arange(2), "p": tmp_path}, path)
    assert json.loads(path.read_text()) == {"a": 0.5, "b": 3, "c": [0, 1], "p": str(tmp_path)}
    assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o600)
    atomic_write_json({}, path)  # the replaced file keeps its mode
    assert path.stat().st_mode & 0o777 == 0o600


def test_temp_names_carry_the_writer_pid():
    assert io_utils.temp_prefix("x.npz") == f".x.npz.{os.getpid()}."
    assert io_utils._TEMP.match(f".x.npz.{os.getpid()}.ab_12.tmp")
    assert not io_utils._TEMP.match("x.npz")
