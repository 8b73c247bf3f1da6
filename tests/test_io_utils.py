"""Atomic writes and crash recovery (interrupted writes, kills mid-write and mid-swap), the
keyed array store (keys, checksums, damaged files) and the text digest."""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from xlir_utils import io_utils
from xlir_utils.data.fetch import ChecksumMismatch, _download
from xlir_utils.data.registry import RemoteFile
from xlir_utils.io_utils import (
    atomic_output,
    atomic_replace_dir,
    atomic_write_bytes,
    atomic_write_json,
    recover_dir,
    sweep_stale_temps,
)
from xlir_utils.keyed_arrays import read_keyed_arrays, text_digest, write_keyed_arrays


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


def test_every_temporary_name_is_swept_once_its_writer_is_gone(tmp_path):
    """Temporary files and build folders of a process that died without cleaning up (as a kill
    leaves them) are recognised and removed; the finished files beside them are kept."""
    code = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from xlir_utils import io_utils
        folder = Path({str(tmp_path)!r})
        io_utils.new_temp_file(folder / "shard-000001.npz")
        io_utils.new_temp_dir(folder / "e5-small-offline-0.3.0-abc")
        cm = io_utils.atomic_output(folder / "index-flat.faiss")
        cm.__enter__().write_bytes(b"half an index")
        os._exit(0)  # no clean-up: what a kill leaves
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    (tmp_path / "kept.npz").write_bytes(b"a finished file")
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != "kept.npz")
    assert len(left) == 3 and all(io_utils._TEMP.match(name) for name in left), left
    assert len(sweep_stale_temps(tmp_path)) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["kept.npz"]


def test_atomic_output_installs_on_success_and_removes_on_error(tmp_path):
    path = tmp_path / "index.faiss"
    with atomic_output(path) as tmp:
        assert io_utils._TEMP.match(tmp.name) and tmp.parent == tmp_path
        tmp.write_bytes(b"first")
    assert path.read_bytes() == b"first" and path.stat().st_mode & 0o777 == 0o644
    with pytest.raises(RuntimeError), atomic_output(path) as tmp:
        tmp.write_bytes(b"second, broken")
        raise RuntimeError("the writer failed")
    assert path.read_bytes() == b"first" and [p.name for p in tmp_path.iterdir()] == ["index.faiss"]


def _remote(source, payload_sha):
    return RemoteFile(dataset="test", path="test/file.bin", url=source.as_uri(), sha256=payload_sha, licence="none")


def test_download_is_verified_fsynced_and_atomic(tmp_path, monkeypatch):
    source = tmp_path / "upstream.bin"
    source.write_bytes(b"payload " * 1000)
    target = tmp_path / "raw" / "file.bin"
    synced = []
    real_fsync = io_utils.os.fsync
    monkeypatch.setattr(io_utils.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    _download(_remote(source, hashlib.sha256(source.read_bytes()).hexdigest()), target)
    assert target.read_bytes() == source.read_bytes() and synced
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]
    with pytest.raises(ChecksumMismatch):
        _download(_remote(source, "0" * 64), target)
    assert target.read_bytes() == source.read_bytes()  # the good file was not replaced
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]  # and nothing was left


# ------------------------------------------------------------------------ keyed array store
def _arrays():
    rng = np.random.default_rng(0)
    return {"embeddings": rng.standard_normal((50, 8)).astype(np.float32), "ids": np.arange(50),
            "label": np.array("Wer hat den Super Bowl 50 gewonnen?")}


def test_keyed_arrays_round_trip(tmp_path):
    path = tmp_path / "cache" / "a.npz"
    arrays = _arrays()
    assert write_keyed_arrays(path, "fp|texts", **arrays) == path
    got = read_keyed_arrays(path, "fp|texts")
    assert set(got) == set(arrays)
    for name, a in arrays.items():
        assert got[name].dtype == a.dtype and np.array_equal(got[name], a), name
    assert read_keyed_arrays(path, None) is not None  # any key: intact contents only
    assert [p.name for p in path.parent.iterdir()] == ["a.npz"]
    assert read_keyed_arrays(tmp_path / "absent.npz", "fp|texts") is None


def test_another_key_is_treated_as_missing_without_a_warning(tmp_path, caplog):
    path = tmp_path / "a.npz"
    write_keyed_arrays(path, "model-1|texts", **_arrays())
    with caplog.at_level(logging.WARNING):
        assert read_keyed_arrays(path, "model-2|texts") is None
        assert read_keyed_arrays(path, "model-1|texts|") is None
    assert not caplog.records


def _flip_inside(path, array):
    """Flip one byte in the middle of ``array``'s data inside the file."""
    data = bytearray(path.read_bytes())
    raw = np.ascontiguousarray(array).tobytes()
    at = data.find(raw)
    assert at >= 0 and data.find(raw, at + 1) < 0
    data[at + len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_flipped_byte_inside_an_array_is_caught(tmp_path, caplog):
    path = tmp_path / "a.npz"
    arrays = _arrays()
    write_keyed_arrays(path, "k", **arrays)
    _flip_inside(path, arrays["embeddings"])
    with caplog.at_level(logging.WARNING):
        assert read_keyed_arrays(path, "k") is None
    assert "unreadable" in caplog.text and str(path) in caplog.text


def test_altered_numbers_in_a_well_formed_file_fail_the_checksum(tmp_path, caplog):
    """The zip container's own CRC is rewritten with the numbers: only the store's checksum sees it."""
    path = tmp_path / "a.npz"
    write_keyed_arrays(path, "k", **_arrays())
    with np.load(path) as z:
        members = {name: z[name].copy() for name in z.files}
    members["embeddings"][3, 2] += 1e-3
    with open(path, "wb") as handle:
        np.savez(handle, **members)
    with caplog.at_level(logging.WARNING):
        assert read_keyed_arrays(path, "k") is None
        assert read_keyed_arrays(path, None) is None
    assert "checksum mismatch" in caplog.text and str(path) in caplog.text


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "plain npz", "array added"])
def test_unreadable_files_are_treated_as_missing_with_a_warning(tmp_path, caplog, damage):
    path = tmp_path / "a.npz"
    arrays = _arrays()
    write_keyed_arrays(path, "k", **arrays)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(data)))
    elif damage == "plain npz":  # an older cache format: arrays and a key, no record
        with open(path, "wb") as handle:
            np.savez(handle, embeddings=arrays["embeddings"], key=np.array("k"))
    else:
        with np.load(path) as z:
            members = {name: z[name] for name in z.files}
        with open(path, "wb") as handle:
            np.savez(handle, extra=np.zeros(3), **members)
    with caplog.at_level(logging.WARNING):
        assert read_keyed_arrays(path, "k") is None
    assert "unreadable" in caplog.text and str(path) in caplog.text
    write_keyed_arrays(path, "k", **arrays)  # the caller replaces it
    assert read_keyed_arrays(path, "k") is not None


def test_store_refuses_what_it_cannot_verify(tmp_path):
    with pytest.raises(ValueError):
        write_keyed_arrays(tmp_path / "a.npz", "k")
    with pytest.raises(ValueError):
        write_keyed_arrays(tmp_path / "a.npz", "k", __record__=np.zeros(2))
    with pytest.raises(TypeError):
        write_keyed_arrays(tmp_path / "a.npz", "k", texts=np.array(["a", None], dtype=object))
    assert not list(tmp_path.iterdir())


def test_text_digest_is_length_prefixed_utf8_sha256():
    texts = ["Wer hat gewonnen?", "天空是蓝色的。", ""]
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little") + b)
    assert text_digest(texts) == h.hexdigest() and text_digest(iter(texts), 16) == h.hexdigest()[:16]
    assert text_digest(["ab", "c"]) != text_digest(["a", "bc"]) != text_digest(["abc"])
    assert text_digest(["a", ""]) != text_digest(["a"])
    assert text_digest(["\ud800"]) != text_digest(["\ud801"])  # lone surrogates hash, distinctly


def test_cached_keyed_arrays_compute_once_and_survive_an_unwritable_store(tmp_path, caplog):
    from xlir_utils.keyed_arrays import cached_keyed_arrays

    calls = []

    def compute():
        calls.append(1)
        return {"a": np.arange(3, dtype=np.float32)}

    path = tmp_path / "c.npz"
    first = cached_keyed_arrays(path, "k1", ("a",), compute, "the test arrays")
    again = cached_keyed_arrays(path, "k1", ("a",), compute, "the test arrays")
    np.testing.assert_array_equal(first["a"], again["a"])
    assert calls == [1]  # the second call read the store
    cached_keyed_arrays(path, "k2", ("a",), compute, "the test arrays")
    assert calls == [1, 1]  # another key computes again
    blocked = tmp_path / "file"
    blocked.write_text("x")  # a file where the store's folder should be: the write fails
    out = cached_keyed_arrays(blocked / "c.npz", "k1", ("a",), compute, "the test arrays")
    np.testing.assert_array_equal(out["a"], np.arange(3))
    assert "could not store the test arrays" in caplog.text


@pytest.mark.parametrize("raised, disk_full, expected", [
    (RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 298752 vs 298640"), True,
     "the disk is full"),
    (RuntimeError("a writer's own failure"), False, None),
    (TypeError("a writer's own bug"), True, None),
    ("quota", False, "the disk is full"),
])
def test_a_folder_save_names_the_full_disk_however_the_writer_reported_it(tmp_path, monkeypatch, raised,
                                                                         disk_full, expected):
    """torch reports a full disk as a RuntimeError; an error chained from a disk-full OSError is
    one too; any other error stays what it was."""
    from xlir_utils.errors import WriteError

    monkeypatch.setattr(io_utils, "_disk_is_full", lambda path: disk_full)
    model = tmp_path / "model"
    _fill(model, "previous")

    def failing(build):
        _fill(build, "half")
        if raised == "quota":
            try:
                raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
            except OSError as exc:
                raise RuntimeError("file write failed") from exc
        raise raised

    if expected is None:
        with pytest.raises(type(raised)) as info:
            atomic_replace_dir(model, failing)
        assert not isinstance(info.value, WriteError)
    else:
        with pytest.raises(WriteError, match=expected) as info:
            atomic_replace_dir(model, failing)
        assert str(model) in str(info.value) and "free some space" in str(info.value)
        if isinstance(raised, RuntimeError):
            assert "unexpected pos" in str(info.value)  # the writer's own words are kept
    assert (model / "weights.bin").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_file_write_names_the_full_disk_when_the_writer_raised_a_runtime_error(tmp_path, monkeypatch):
    """FAISS and torch, writing by name into ``atomic_output``, report a full disk as a RuntimeError."""
    from xlir_utils.errors import WriteError

    path = tmp_path / "index.faiss"
    path.write_bytes(b"previous")
    monkeypatch.setattr(io_utils, "_disk_is_full", lambda where: True)
    with pytest.raises(WriteError, match="the disk is full.*fwrite failed") as info:
        with io_utils.atomic_output(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("Error in faiss::FileIOWriter: fwrite failed")
    assert str(path) in str(info.value)
    monkeypatch.setattr(io_utils, "_disk_is_full", lambda where: False)
    with pytest.raises(RuntimeError, match="fwrite failed") as info:
        with io_utils.atomic_output(path) as tmp:
            raise RuntimeError("Error in faiss::FileIOWriter: fwrite failed")
    assert not isinstance(info.value, WriteError)
    assert path.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["index.faiss"]
