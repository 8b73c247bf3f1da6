"""The notebook index (notebooks/README.md) names every result file each notebook writes."""
from __future__ import annotations

import fnmatch
import re

from xlir_utils import outputs, paths


def _expand(pattern: str) -> list[str]:
    m = re.match(r"(.*?)\{(.*?)\}(.*)", pattern)
    return [y for x in m.group(2).split(",") for y in _expand(m.group(1) + x + m.group(3))] if m else [pattern]


def index_rows() -> dict[str, list[str]]:
    """Per notebook number, the paths its row of the index names in backticks (braces expanded)."""
    rows = {}
    for line in (paths.project_root() / "notebooks" / "README.md").read_text().splitlines():
        m = re.match(r"\| (0\d) \|", line)
        if m:
            rows[m.group(1)] = [p for ref in re.findall(r"`([^`]+)`", line) for p in _expand(ref)]
    return rows


def unlisted() -> list[str]:
    """Result files a notebook writes (``outputs.WRITERS``) that its row of the index does not name."""
    rows = index_rows()
    missing = []
    for name, writer in outputs.WRITERS.items():
        m = re.fullmatch(r"notebook (0\d)", writer)
        if m and not any(fnmatch.fnmatch(f"results/{name}", p) for p in rows[m.group(1)]):
            missing.append(f"results/{name} (written by {writer})")
    return missing


def test_the_index_names_every_result_file_a_notebook_writes():
    assert sorted(index_rows()) == ["01", "02", "03", "04", "05", "06"]
    assert unlisted() == [], "notebooks/README.md does not list these in their notebook's outputs"


def test_a_result_file_missing_from_the_index_is_caught(monkeypatch):
    monkeypatch.setitem(outputs.WRITERS, "not_listed.csv", "notebook 03")
    assert unlisted() == ["results/not_listed.csv (written by notebook 03)"]
