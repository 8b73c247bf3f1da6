"""Runtimes come from one table (results/runtimes.csv) and make reproduce measures them."""
import shutil

import nbformat
import pandas as pd
import pytest

from xlir_utils import executed_copy, notebook_runs, outputs, paths, runtimes
from xlir_utils.errors import XlirError


def test_every_runtime_text_is_the_one_the_runtime_table_gives():
    """The notebooks' headers, the README's runtime block and the notebook table say what
    results/runtimes.csv says (``make figures`` writes them)."""
    table = runtimes.read()
    assert set(table.profile) == set(runtimes.PROFILES) and len(table) == 3 * 6
    root = paths.project_root()
    for path in sorted((root / "notebooks").glob("0*.ipynb")):
        header = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells[:3] if c.cell_type == "markdown")
        rows = [line for line in header.splitlines() if line.startswith(runtimes.RUNTIME_ROW)]
        assert rows == [runtimes.notebook_line(table, path.name[:2])], path.name
    readme = (root / "README.md").read_text()
    begin, end = runtimes.README_MARKERS
    assert readme[readme.index(begin) + len(begin): readme.index(end)].strip() == runtimes.readme_block(table)
    index = (root / "notebooks" / "README.md").read_text()
    assert runtimes.index_table(index, table) == index


def test_a_measurement_replaces_its_row_and_an_estimate_says_it_is_one(store_project):
    first = runtimes.record("smoke", "02", 61.4, date="2026-01-01", host="2-core test CPU", note="a first try")
    runtimes.record("smoke", "02", 3725, date="2026-01-02", host="2-core test CPU", note="`make reproduce`",
                    peak_gb=1.234)
    runtimes.record("smoke", "01", 9.6, date="2026-01-02", host="2-core test CPU", note="`make reproduce`")
    table = runtimes.read()
    assert len(first) == 1 and list(table.notebook) == ["01", "02"]
    assert runtimes.notebook_line(table, "02") == \
        "| **Runtime** | smoke: 1 h 2 min, peak memory 1.2 GB (`make reproduce`; 2026-01-02, 2-core test CPU) |"
    assert "- smoke 01, 02: `make reproduce`; 2026-01-02, 2-core test CPU" in runtimes.readme_block(table)
    assert "| 02 | 1 h 2 min (1.2 GB) |" in runtimes.readme_block(table)
    estimate = pd.Series({"profile": "paper", "notebook": "02", "seconds": float("nan"), "estimate": "hours",
                          "date": "", "host": "", "note": ""})
    assert runtimes.cell(estimate) == "hours (an estimate)"
    assert [runtimes.duration(s) for s in (9.6, 60, 2494, 3725, 7185)] == \
        ["10 s", "1 min", "41 min 34 s", "1 h 2 min", "2 h"]
    with pytest.raises(ValueError, match="profile 'fast'"):
        runtimes.record("fast", "01", 1, date="", host="", note="")


def test_make_figures_rewrites_a_stale_runtime_row_and_keeps_the_notebook_clean(tmp_path, monkeypatch):
    root = tmp_path / "proj"
    shutil.copytree(paths.project_root() / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns("executed"))
    shutil.copy(paths.project_root() / "README.md", root / "README.md")
    table = runtimes.read()
    monkeypatch.setenv("XLIR_ROOT", str(root))
    path = root / "notebooks" / "04_zero_shot_evaluation.ipynb"
    clean = path.read_text()
    path.write_text(clean.replace("| **Runtime** | smoke:", "| **Runtime** | smoke: 3 days, typed by hand;"))
    changed = runtimes.write_texts(table)
    assert changed == [path] and path.read_text() == clean
    assert runtimes.write_texts(table) == []


def _notebook(path, *sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "xlir", "display_name": "xlir (.venv)", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_reproduce_runs_each_notebook_times_it_and_keeps_a_slim_executed_copy(store_project):
    root = paths.project_root()  # the throw-away project of store_project
    _notebook(root / "notebooks" / "01_first.ipynb", "import os\nprint('profile', os.environ['XLIR_PROFILE'])",
              "import ipywidgets\nipywidgets.IntSlider(value=3)",
              "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='steps'):\n    pass")
    _notebook(root / "notebooks" / "02_second.ipynb", "21 * 2",
              "from xlir_utils import paths\nprint(paths.project_root() / 'figures' / 'a.png')")
    done = notebook_runs.reproduce("smoke")
    assert [d["notebook"] for d in done] == ["01_first.ipynb", "02_second.ipynb"]
    table = runtimes.read()
    assert list(table.notebook) == ["01", "02"] and set(table.profile) == {"smoke"}
    assert (table.seconds > 0).all() and table.note.str.contains("a fresh checkout").all()
    assert (table.peak_gb > 0.01).all() and [d["peak_gb"] for d in done] == pytest.approx(list(table.peak_gb), abs=0.01)
    executed = nbformat.read(root / "build" / "notebooks" / "smoke" / "01_first.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"] == "profile smoke\n"
    widget = executed.cells[1].outputs[0]["data"]
    assert executed_copy.WIDGET_VIEW not in widget and widget["text/plain"] == executed_copy.WIDGET_TEXT
    bar = [o for o in executed.cells[2].outputs if "data" in o]  # a progress bar keeps its text
    assert len(bar) == 1 and executed_copy.WIDGET_VIEW not in bar[0]["data"]
    assert bar[0]["data"]["text/plain"].startswith("steps: 100%|██████████| 3/3 [")
    assert "widgets" not in executed.metadata and all("execution" not in c.metadata for c in executed.cells)
    out = nbformat.read(root / "build" / "notebooks" / "smoke" / "02_second.ipynb", as_version=4)
    assert out.cells[0].outputs[0]["data"]["text/plain"] == "42"
    assert out.cells[1].outputs[0]["text"] == "figures/a.png\n"  # not the path on the machine that ran it
    assert notebook_runs.executed_dir("quick") == root / "notebooks" / "executed"


def test_a_runtime_says_what_the_run_reused(store_project):
    assert notebook_runs.starting_point("smoke") == "a fresh checkout"
    runs = paths.runs_dir("smoke")
    for name in ("recipe-study", "full-X-X-s13", "full-X-X-s13.lock", "full-hybrid-s13"):
        (runs / name).mkdir(parents=True)
    (paths.cache_dir() / "embeddings").mkdir(parents=True)
    (paths.cache_dir() / "embeddings" / "a.npz").write_bytes(b"")
    assert notebook_runs.starting_point("smoke") == "reusing 2 runs, 1 cached embedding files"
    assert notebook_runs.starting_point("quick") == "reusing 1 cached embedding files"


def test_a_failing_notebook_stops_the_run_and_keeps_its_executed_part(store_project):
    root = paths.project_root()
    _notebook(root / "notebooks" / "01_fails.ipynb", "print('before')", "1 / 0", "print('never')")
    _notebook(root / "notebooks" / "02_after.ipynb", "print('not reached')")
    failed = r"01_fails.ipynb failed in the 'smoke' profile \(ZeroDivisionError: division by zero\)"
    with pytest.raises(XlirError, match=failed):
        notebook_runs.reproduce("smoke")
    part = nbformat.read(root / "build" / "notebooks" / "smoke" / "01_fails.ipynb", as_version=4)
    assert part.cells[0].outputs[0]["text"] == "before\n" and part.cells[2].outputs == []
    assert not (root / "build" / "notebooks" / "smoke" / "02_after.ipynb").exists()
    assert not (paths.results_dir("quick") / outputs.RUNTIMES_FILE).exists()


def test_a_figure_in_an_executed_copy_is_a_smaller_palette_png_that_looks_the_same():
    import base64
    import io

    import matplotlib
    import numpy as np
    from PIL import Image

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.imshow(np.linspace(0, 1, 400).reshape(20, 20), cmap="viridis")
    ax.plot([0, 19], [0, 19], color="crimson")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", transparent=True)  # an alpha channel, transparent around the axes
    plt.close(fig)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    slim = executed_copy.smaller_png(encoded)
    before, after = (Image.open(io.BytesIO(base64.b64decode(x))) for x in (encoded, slim))
    assert len(slim) < 0.7 * len(encoded) and after.mode == "P" and after.size == before.size
    on_white = Image.alpha_composite(Image.new("RGBA", before.size, "white"), before.convert("RGBA")).convert("RGB")
    diff = np.abs(np.asarray(on_white, int) - np.asarray(after.convert("RGB"), int))
    assert diff.mean() < 1 and np.percentile(diff, 99) <= 8  # a few antialiased edge pixels move more
    assert np.asarray(after.convert("RGB"))[0, 0].tolist() == [255, 255, 255]  # the transparent corner, white


def _with_outputs(nb):
    """``nb`` as if run: every code cell with an output and an execution count."""
    ran = nbformat.reads(nbformat.writes(nb), as_version=4)
    for i, c in enumerate(c for c in ran.cells if c.cell_type == "code"):
        c.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"output {i}\n")]
        c.execution_count = i + 1
    ran.metadata["language_info"] = {"name": "python"}
    return ran


def test_an_executed_copy_takes_the_notebooks_prose_and_keeps_its_outputs(store_project):
    root = paths.project_root()
    clean = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("| **Runtime** | quick: 1 h |"),
                                            nbformat.v4.new_code_cell("print('a')"),
                                            nbformat.v4.new_markdown_cell("**What we see.** a"),
                                            nbformat.v4.new_code_cell("print('b')")])
    executed = _with_outputs(clean)
    clean.cells[0].source = "| **Runtime** | quick: 2 h 5 min |"
    clean.cells.insert(2, nbformat.v4.new_markdown_cell("A new reading of the first output."))
    new = executed_copy.with_prose_of(clean, executed)
    assert [c.source for c in new.cells] == [c.source for c in clean.cells]
    assert [c.outputs[0]["text"] for c in new.cells if c.cell_type == "code"] == ["output 0\n", "output 1\n"]
    assert new.metadata["language_info"] == {"name": "python"}
    # on disk, through make figures' step: the copy is rewritten once, then left alone
    (root / "notebooks").mkdir(parents=True, exist_ok=True)
    nbformat.write(clean, root / "notebooks" / "01_x.ipynb")
    executed_copy.executed_dir("quick").mkdir(parents=True)
    nbformat.write(executed, executed_copy.executed_dir("quick") / "01_x.ipynb")
    assert executed_copy.refresh_prose("quick") == ([executed_copy.executed_dir("quick") / "01_x.ipynb"], [])
    assert executed_copy.refresh_prose("quick") == ([], [])
    # a changed code cell: its outputs no longer belong to it
    clean.cells[-1].source = "print('c')"
    with pytest.raises(XlirError, match=r"code cell 2 differs from the notebook's\. Rerun the notebook"):
        executed_copy.with_prose_of(clean, executed)
    nbformat.write(clean, root / "notebooks" / "01_x.ipynb")
    written, stale = executed_copy.refresh_prose("quick")
    assert written == [] and len(stale) == 1
    assert "python -m xlir_utils.notebook_runs --profile quick notebooks/01_x.ipynb" in stale[0]


def test_the_committed_executed_notebooks_are_of_the_current_notebooks():
    """Each executed copy holds its notebook's code as it ran and its prose as it is now
    (``make figures`` refreshes the prose; a changed code cell needs the notebook rerun)."""
    copies = sorted(executed_copy.executed_dir("quick").glob("0*.ipynb"))
    if not copies:
        pytest.skip("no executed notebooks committed (make reproduce writes them)")
    for path in copies:
        executed = nbformat.read(path, as_version=4)
        clean = nbformat.read(paths.project_root() / "notebooks" / path.name, as_version=4)
        assert executed_copy.with_prose_of(clean, executed, f"notebooks/{path.name}") == executed, \
            f"{path.name}: its prose differs from the notebook's; run make figures"


def test_paths_of_the_machine_that_ran_a_notebook_are_shown_relative_to_its_checkout(tmp_path):
    root = tmp_path / "checkout"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x")]
    nb.cells[0].outputs = [
        nbformat.v4.new_output("stream", text=f"saved {root}/figures/a.png\nin {root}\n"),
        nbformat.v4.new_output("execute_result", data={"text/markdown": f"[b]({root}/results/b.csv)",
                                                       "text/html": f"<td>{root}/runs/x</td>"}),
        nbformat.v4.new_output("error", ename="FileNotFoundError", evalue=f"{root}/results/c.parquet",
                               traceback=[f"File {root}/xlir_utils/outputs.py:3", f"{root}-other/kept"]),
    ]
    out = executed_copy.relative_to_checkout(nb, root).cells[0].outputs
    assert out[0]["text"] == "saved figures/a.png\nin .\n"
    assert out[1]["data"] == {"text/markdown": "[b](results/b.csv)", "text/html": "<td>runs/x</td>"}
    assert out[2]["evalue"] == "results/c.parquet"
    assert out[2]["traceback"] == ["File xlir_utils/outputs.py:3", f"{root}-other/kept"]  # another folder
