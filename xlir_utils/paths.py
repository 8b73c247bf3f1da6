"""Project directories, derived from one project root whatever the working directory.

Notebooks run with ``notebooks/`` as their working directory under nbmake and
Jupyter alike, so nothing here uses relative paths. ``XLIR_ROOT`` overrides the
root (useful for an installed, non-editable package); ``XLIR_CACHE_DIR`` moves the
cache (converted models, embeddings); ``XLIR_DATA_DIR`` names an offline copy of the
raw data in the offline layout (see :mod:`xlir_utils.data.registry`).
"""
from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The repository root: ``XLIR_ROOT`` if set, else the folder above this package (notebooks 02-05)."""
    env = os.environ.get("XLIR_ROOT", "").strip()
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """``data/``: raw downloads under ``raw/``, parsed tables under ``processed/``."""
    return project_root() / "data"


def raw_dir() -> Path:
    return data_dir() / "raw"


def processed_dir(profile: str) -> Path:
    """Processed tables are per profile: a smoke run never overwrites quick outputs (notebook 01 §6)."""
    return data_dir() / "processed" / profile


def offline_data_dir() -> Path | None:
    """The offline raw-data directory named by ``XLIR_DATA_DIR``, or None (unset or empty; notebook 01 §1)."""
    env = os.environ.get("XLIR_DATA_DIR", "").strip()
    return Path(env).expanduser().resolve() if env else None


def cache_dir() -> Path:
    """Converted models and embedding caches (``XLIR_CACHE_DIR``, default ``.cache/``)."""
    env = os.environ.get("XLIR_CACHE_DIR", "").strip()
    return Path(env).expanduser().resolve() if env else project_root() / ".cache"


def runs_dir(profile: str) -> Path:
    """Trained models and their logs, one sub-folder per run, per profile (notebooks 02-03)."""
    return project_root() / "runs" / profile


def results_dir(profile: str) -> Path:
    """Result tables. The quick profile's are committed; smoke's go to a scratch folder (notebooks 01-05)."""
    root = project_root() / "results"
    return root if profile == "quick" else root / profile


def figures_dir(profile: str) -> Path:
    """Figures. The quick profile's are committed; other profiles get a sub-folder (notebooks 01-05)."""
    root = project_root() / "figures"
    return root if profile == "quick" else root / profile


def ensure(path: Path) -> Path:
    """Create ``path`` (a directory) if needed and return it."""
    path.mkdir(parents=True, exist_ok=True)
    return path
