"""Shared test set-up: tests read the real data through the kit's offline-directory setting.

``XLIR_DATA_DIR`` defaults to ``../shared/data`` beside the checkout (where CI and the
developers' machines keep the data); the profile defaults to ``smoke``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if not os.environ.get("XLIR_DATA_DIR", "").strip():  # unset or empty: the copy beside the checkout
    os.environ["XLIR_DATA_DIR"] = str((ROOT.parent / "shared" / "data").resolve())
os.environ.setdefault("XLIR_PROFILE", "smoke")

SHARED_DATA = Path(os.environ["XLIR_DATA_DIR"])


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The offline data directory; tests that need it fail loudly if it is missing."""
    if not (SHARED_DATA / "lareqa").is_dir():
        pytest.fail(f"offline data not found: XLIR_DATA_DIR={SHARED_DATA} has no lareqa/ folder; set "
                    "XLIR_DATA_DIR to a copy of shared/data (the tests read the real data)")
    return SHARED_DATA


def isolated_project(tmp_path: Path, monkeypatch, offline_dir: Path | None, *, offline: bool = True) -> None:
    """Run a test in a throw-away project (``XLIR_ROOT``) with its own offline data directory
    (None: no ``XLIR_DATA_DIR``) and, unless ``offline=False``, downloads forbidden."""
    monkeypatch.setenv("XLIR_ROOT", str(tmp_path / "proj"))
    if offline_dir is None:
        monkeypatch.delenv("XLIR_DATA_DIR", raising=False)
    else:
        monkeypatch.setenv("XLIR_DATA_DIR", str(offline_dir))
    if offline:
        monkeypatch.setenv("XLIR_OFFLINE", "1")
    else:
        monkeypatch.delenv("XLIR_OFFLINE", raising=False)


def random_unit_embeddings(rset, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(queries, candidates) of ``rset`` as seeded random unit vectors: content-free embeddings
    with no score ties, for checks that depend only on relevance and ranking."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((len(rset.queries), dim)).astype(np.float32)
    c = rng.standard_normal((len(rset.candidates), dim)).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True), c / np.linalg.norm(c, axis=1, keepdims=True)
