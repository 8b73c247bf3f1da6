"""Each notebook's runtime per profile, from one table: ``results/runtimes.csv`` (the notebooks'
headers, the notebook table and the README's runtime block are written from it).

A row is one notebook in one profile: either *measured* (``seconds``; ``peak_gb``, the kernel's
peak resident memory, where it was sampled; the ``date`` and ``host`` it was measured on, and a
``note`` on how, e.g. ``make reproduce`` on a fresh checkout) or an
*estimate* (``estimate`` holds its text, e.g. "hours per run on one GPU"). ``make reproduce``
(:mod:`xlir_utils.notebook_runs`) replaces the rows of the notebooks it ran; ``make figures``
rewrites the texts (:func:`write_texts`). All profiles share the one table under ``results/``.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import nbformat
import pandas as pd

from . import outputs, paths
from .io_utils import atomic_write_bytes

PROFILES = ("smoke", "quick", "paper")
COLUMNS = ["profile", "notebook", "seconds", "peak_gb", "estimate", "date", "host", "note"]
RUNTIME_ROW = "| **Runtime** |"  # the header row of every notebook's opening table
TABLE_PROFILE = "quick"  # the results folder that holds the table for every profile
README_MARKERS = ("<!-- RUNTIMES:BEGIN (make figures writes this block from results/runtimes.csv) -->",
                  "<!-- RUNTIMES:END -->")


def read() -> pd.DataFrame:
    """The runtime table (verified against the results manifest); empty if none was written."""
    if not (paths.results_dir(TABLE_PROFILE) / outputs.RUNTIMES_FILE).is_file():
        return pd.DataFrame(columns=COLUMNS)
    table = outputs.read_table(outputs.RUNTIMES_FILE, TABLE_PROFILE).reindex(columns=COLUMNS)
    table["notebook"] = table.notebook.map(lambda n: f"{int(n):02d}")
    return table


def record(profile: str, notebook: str, seconds: float, *, date: str, host: str, note: str,
           peak_gb: float | None = None) -> pd.DataFrame:
    """Replace the row of ``notebook`` (``"04"``) in ``profile`` by a measurement (wall time, and
    the kernel's peak memory in GB where measured); returns the table written (``make reproduce``)."""
    if profile not in PROFILES:
        raise ValueError(f"profile {profile!r}: one of {', '.join(PROFILES)}")
    table = read()
    table = table[~((table.profile == profile) & (table.notebook == notebook))]
    row = {"profile": profile, "notebook": notebook, "seconds": round(float(seconds), 1),
           "peak_gb": None if peak_gb is None else round(float(peak_gb), 2), "estimate": "", "date": date,
           "host": host, "note": note}
    table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
    order = {p: i for i, p in enumerate(PROFILES)}
    table = table.sort_values(["notebook", "profile"], key=lambda c: c.map(order) if c.name == "profile" else c)
    outputs.save_table(table[COLUMNS].reset_index(drop=True), outputs.RUNTIMES_FILE, TABLE_PROFILE)
    return table


def duration(seconds: float) -> str:
    """``51 s``, ``41 min 34 s``, ``1 h 54 min``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    hours, minutes = divmod(round(s / 60), 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def cell(row: pd.Series, *, provenance: bool = True) -> str:
    """One profile's runtime of one notebook: a measured time and peak memory with how, when and
    where they were measured (``provenance``; else the memory in parentheses), or the estimate
    marked as one."""
    if _blank(row.seconds):
        return f"{row.estimate} (an estimate)"
    if not provenance:
        return duration(row.seconds) + ("" if _blank(row.peak_gb) else f" ({row.peak_gb:.1f} GB)")
    text = duration(row.seconds) + ("" if _blank(row.peak_gb) else f", peak memory {row.peak_gb:.1f} GB")
    return text + (f" ({provenance_text(row)})" if provenance_text(row) else "")


def provenance_text(row: pd.Series) -> str:
    """How, when and where a time was measured: ``note; date, host``."""
    where = ", ".join(str(x) for x in (row.date, row.host) if not _blank(x))
    return "; ".join(x for x in ("" if _blank(row.note) else str(row.note), where) if x)


def notebook_line(table: pd.DataFrame, notebook: str) -> str:
    """The ``| **Runtime** | ... |`` row of a notebook's opening table."""
    rows = table[table.notebook == notebook].set_index("profile")
    parts = [f"{p}: {cell(rows.loc[p])}" for p in PROFILES if p in rows.index]
    return f"{RUNTIME_ROW} {' · '.join(parts) or 'not measured yet'} |"


def readme_block(table: pd.DataFrame) -> str:
    """The README's runtime table: one row per notebook, one column per profile, and how each
    profile's times were measured."""
    lines = ["| notebook | " + " | ".join(PROFILES) + " |", "|---|" + "---|" * len(PROFILES)]
    for notebook, rows in table.groupby("notebook"):
        rows = rows.set_index("profile")
        lines.append(f"| {notebook} | " + " | ".join(cell(rows.loc[p], provenance=False) if p in rows.index else ""
                                                     for p in PROFILES) + " |")
    lines += ["", "Wall time, and in parentheses the notebook kernel's peak resident memory where it was sampled; "
              "how each time was measured:", ""]
    for profile in PROFILES:  # how each measured time was taken, notebooks with the same story together
        rows = table[(table.profile == profile) & table.seconds.notna()]
        texts = rows.apply(provenance_text, axis=1) if len(rows) else pd.Series(dtype=str)
        for text in dict.fromkeys(texts):
            if text:
                lines.append(f"- {profile} {_span(list(rows.notebook[texts == text]))}: {text}")
    return "\n".join(lines).rstrip()


def _span(notebooks: list[str]) -> str:
    """``01–06`` for a run of consecutive notebooks, else ``01, 03``."""
    numbers = [int(n) for n in notebooks]
    if len(numbers) > 2 and numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"{notebooks[0]}–{notebooks[-1]}"
    return ", ".join(notebooks)


def _notebook_paths() -> list[Path]:
    return sorted((paths.project_root() / "notebooks").glob("0*.ipynb"))


def write_texts(table: pd.DataFrame | None = None) -> list[Path]:
    """Rewrite every runtime text from the table: the ``**Runtime**`` row of each notebook's
    opening cells, the README's runtime block and the notebook table's runtime column
    (``make figures``); returns the files that changed."""
    from .reporting.readme import replace_block  # lazy: the reporting package imports the figures

    table = read() if table is None else table
    changed = []
    for path in _notebook_paths():
        nb = nbformat.read(path, as_version=4)
        line = notebook_line(table, path.name[:2])
        edited = False
        for c in nb.cells[:3]:
            if c.cell_type == "markdown" and RUNTIME_ROW in c.source:
                new = re.sub(rf"^{re.escape(RUNTIME_ROW)}.*$", lambda _: line, c.source, flags=re.M)
                edited |= new != c.source
                c.source = new
        if edited:
            atomic_write_bytes((nbformat.writes(nb) + "\n").encode(), path)
            changed.append(path)
    root = paths.project_root()
    for path, render in ((root / "README.md", lambda t: replace_block(t, README_MARKERS, readme_block(table))),
                         (root / "notebooks" / "README.md", lambda t: index_table(t, table))):
        if path.is_file():
            text = path.read_text()
            new = render(text)
            if new != text:
                atomic_write_bytes(new.encode(), path)
                changed.append(path)
    return changed


def index_table(text: str, table: pd.DataFrame) -> str:
    """``notebooks/README.md`` with the runtime column (the table's last) of each notebook's row
    rewritten: ``smoke · quick · paper``."""
    out = []
    for line in text.splitlines(keepends=True):
        m = re.match(r"^\| (\d\d) \|", line)
        if m:
            rows = table[table.notebook == m.group(1)].set_index("profile")
            times = " · ".join(f"{p} {cell(rows.loc[p], provenance=False)}" for p in PROFILES if p in rows.index)
            cells = line.rstrip("\n").rstrip("|").split(" | ")
            line = " | ".join(cells[:-1]) + f" | {times or 'not measured yet'} |\n"
        out.append(line)
    return "".join(out)
