"""The pinned-stack check and the one thread setting (``XLIR_THREADS``)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from xlir_utils import environment


def _run(code: str, **env) -> subprocess.CompletedProcess:
    full = {**os.environ, **env}
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        full.pop(var, None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full, capture_output=True, text=True)


@pytest.mark.slow
def test_xlir_threads_holds_while_encoding_without_check_environment():
    """A plain script (no check_environment) used to get every core on its first encode."""
    out = _run("""
        import torch
        from xlir_utils.encoders import encode, load_encoder
        m = load_encoder("e5-small-offline")
        encode(m, ["a short text", "another one"], "query", cache=False, show_progress=False)
        print(torch.get_num_threads())
    """, XLIR_THREADS="1")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "1"


def test_without_xlir_threads_every_core_unless_the_user_chose(monkeypatch):
    import torch

    monkeypatch.delenv("XLIR_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    saved = torch.get_num_threads()
    try:
        assert environment.apply_threads() == (os.cpu_count() or 1)
        torch.set_num_threads(1)  # the user's own choice is kept
        assert environment.apply_threads() == 1
        assert environment.apply_threads(threads=2) == 2  # an explicit argument wins
    finally:
        torch.set_num_threads(saved)
        environment.apply_threads(threads=saved)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5"])
def test_bad_xlir_threads_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("XLIR_THREADS", value)
    with pytest.raises(ValueError, match=r"XLIR_THREADS=.*positive integer"):
        environment.requested_threads()
    with pytest.raises(ValueError, match="XLIR_THREADS"):
        environment.check_environment()


def test_check_environment_reports_the_pinned_stack(monkeypatch):
    import torch

    saved = torch.get_num_threads()
    monkeypatch.setenv("XLIR_THREADS", "1")
    try:
        found = environment.check_environment()
        assert found["torch"].startswith("2.13.0") and found["threads"] == "1"
    finally:
        environment.apply_threads(threads=saved)
