"""What a reader meets: every section that runs code ends on prose that reads its output, and
the notebook index (notebooks/README.md) names every result file each notebook writes."""
from __future__ import annotations

import fnmatch
import re

import nbformat
import pytest

from xlir_utils import outputs, paths

NOTEBOOKS = sorted((paths.project_root() / "notebooks").glob("0*.ipynb"))
# sections whose code checks or summarises in words of its own: their output needs no reading
SELF_READING = ("Check", "What this notebook established", "Questions to discuss")


def sections(nb) -> list[tuple[str, list]]:
    """The notebook's ``##`` sections: (title, cells after the heading cell)."""
    out = []
    for c in nb.cells:
        if c.cell_type == "markdown" and c.source.startswith("## "):
            out.append((c.source.splitlines()[0][3:], []))
        elif out:
            out[-1][1].append(c)
    return out


def unread(nb) -> list[str]:
    """Sections whose last cell is code: an output no prose reads."""
    return [title for title, cells in sections(nb) if cells and cells[-1].cell_type == "code"
            and not re.sub(r"^\d+\.\s*", "", title).startswith(SELF_READING)]


def test_the_six_notebooks_are_found():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_no_section_ends_on_an_output_no_prose_reads(path):
    assert unread(nbformat.read(path, as_version=4)) == []


def test_a_section_ending_on_code_is_caught():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("## 1. A table"),
                                         nbformat.v4.new_code_cell("table"),
                                         nbformat.v4.new_markdown_cell("## 2. Check what this notebook wrote"),
                                         nbformat.v4.new_code_cell("assert True")])
    assert unread(nb) == ["1. A table"]
    nb.cells.insert(2, nbformat.v4.new_markdown_cell("**What we see.** The table."))
    assert unread(nb) == []


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


EXECUTED = paths.project_root() / "notebooks" / "executed"


def unlinked_executed_copies(readme: str, index: str) -> list[str]:
    """Executed copies that the README or the notebook index does not link."""
    return [p.name for p in sorted(EXECUTED.glob("0*.ipynb"))
            if f"](notebooks/executed/{p.name})" not in readme or f"](executed/{p.name})" not in index]


def test_every_notebook_has_an_executed_copy_that_both_indexes_link():
    root = paths.project_root()
    readme, index = (root / "README.md").read_text(), (root / "notebooks" / "README.md").read_text()
    assert sorted(p.name for p in EXECUTED.glob("0*.ipynb")) == [p.name for p in NOTEBOOKS]
    assert unlinked_executed_copies(readme, index) == []
    assert unlinked_executed_copies(readme.replace("notebooks/executed/04", "notebooks/04"), index) == [
        "04_zero_shot_evaluation.ipynb"]


def broken_links(page) -> list[str]:
    """Relative links of a Markdown page (``](target)``, anchors dropped) that name no file or folder."""
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())
    return [t for t in targets if "://" not in t and not (page.parent / t).exists()]


@pytest.mark.parametrize("page", ["README.md", "notebooks/README.md"])
def test_every_relative_link_of_the_indexes_resolves(page, tmp_path):
    assert broken_links(paths.project_root() / page) == []
    (tmp_path / "page.md").write_text("[a](page.md) [b](missing.ipynb#x) [c](https://example.org)")
    assert broken_links(tmp_path / "page.md") == ["missing.ipynb"]
