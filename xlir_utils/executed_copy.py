"""An executed notebook made small enough to commit (``make reproduce``'s copies in
``notebooks/executed/``, :mod:`xlir_utils.notebook_runs`): figures as palette PNGs, progress bars
as their final text, no widget state and no per-cell timestamps; and kept in step with the
clean notebook's prose (:func:`refresh_prose`, run by ``make figures``).
"""
from __future__ import annotations

import base64
import copy
import html
import io
import re
from pathlib import Path

import nbformat
from PIL import Image

from . import paths
from .errors import XlirError
from .io_utils import atomic_write_bytes

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_TEXT = "(an interactive widget: open the notebook in Jupyter and run it to use it)"


def smaller_png(encoded: str) -> str:
    """A base64 PNG as a 256-colour palette PNG over white, if that is smaller (plots have few
    colours: about a third of the bytes, no visible change); else unchanged."""
    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    if image.mode in ("RGBA", "LA", "P"):
        white = Image.new("RGBA", image.size, "white")
        image = Image.alpha_composite(white, image.convert("RGBA"))
    palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    smaller = base64.b64encode(out.getvalue()).decode()
    return smaller if len(smaller) < len(encoded) else encoded


def progress_texts(nb: nbformat.NotebookNode) -> dict[str, str]:
    """The final text of each progress bar (tqdm's box of a label, a bar and a label), by widget
    model id, from the widget state the kernel left in ``nb``'s metadata: a static copy's output
    holds only the bar's first text (``0%``)."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    texts = {}
    for model_id, model in state.items():
        if model.get("model_name") != "HBoxModel":
            continue
        parts = [state.get(str(c).removeprefix("IPY_MODEL_"), {}) for c in model.get("state", {}).get("children", [])]
        if [x.get("model_name") for x in parts] != ["HTMLModel", "FloatProgressModel", "HTMLModel"]:
            continue
        left, bar, right = (x.get("state", {}) for x in parts)
        done = bar.get("value", 0) / bar["max"] if bar.get("max") else 0.0
        text = f"{left.get('value', '')}|{'█' * round(10 * done):<10}|{right.get('value', '')}"
        texts[model_id] = html.unescape(text).replace("\u2007", " ")
    return texts


def relative_to_checkout(nb: nbformat.NotebookNode, root: Path) -> nbformat.NotebookNode:
    """Paths under the checkout ``root`` printed in outputs (streams, rich text, tracebacks),
    shown relative to it (``figures/02_loss_curves.png``, not the path on the machine that ran
    the notebook); the root itself becomes ``.``."""
    root = str(Path(root).resolve())
    pattern = re.compile(re.escape(root) + r"(/|(?![\w.-]))")

    def strip(text: str) -> str:
        return pattern.sub(lambda m: "" if m.group(1) else ".", text)

    for c in nb.cells:
        for out in c.get("outputs", []):
            if isinstance(out.get("text"), str):
                out["text"] = strip(out["text"])
            if isinstance(out.get("evalue"), str):
                out["evalue"] = strip(out["evalue"])
            if isinstance(out.get("traceback"), list):
                out["traceback"] = [strip(line) for line in out["traceback"]]
            data = out.get("data", {})
            for kind in ("text/plain", "text/html", "text/markdown"):
                if isinstance(data.get(kind), str):
                    data[kind] = strip(data[kind])
    return nb


def slim(nb: nbformat.NotebookNode, root: Path | None = None) -> nbformat.NotebookNode:
    """An executed notebook without what a static reader cannot use: widget state (a progress
    bar's output shows its final text, :func:`progress_texts`; another widget a line saying it is
    one) and per-cell execution timestamps; figures as palette PNGs (:func:`smaller_png`); paths
    relative to the checkout ``root`` (default: this one; :func:`relative_to_checkout`)."""
    relative_to_checkout(nb, root or paths.project_root())
    bars = progress_texts(nb)
    nb.metadata.pop("widgets", None)
    for c in nb.cells:
        c.metadata.pop("execution", None)
        for out in c.get("outputs", []):
            data = out.get("data")
            if not data:
                continue
            if WIDGET_VIEW in data:
                view = data.pop(WIDGET_VIEW)
                data["text/plain"] = bars.get(view.get("model_id"), WIDGET_TEXT)
            if "image/png" in data:
                data["image/png"] = smaller_png(data["image/png"])
    return nb


def executed_dir(profile: str) -> Path:
    """``notebooks/executed/`` for quick (committed), ``build/notebooks/<profile>/`` for the others."""
    root = paths.project_root()
    return root / "notebooks" / "executed" if profile == "quick" else root / "build" / "notebooks" / profile


def rerun_command(name: str, profile: str) -> str:
    """The command that runs notebook ``name`` (``notebooks/04_....ipynb``) again in ``profile``."""
    return f"python -m xlir_utils.notebook_runs --profile {profile} {name}"


def with_prose_of(clean: nbformat.NotebookNode, executed: nbformat.NotebookNode,
                  name: str = "notebooks/<notebook>.ipynb", profile: str = "quick") -> nbformat.NotebookNode:
    """``clean``'s cells with ``executed``'s outputs: the current prose (markdown, the generated
    runtime row) over the outputs of the run, which stay valid only while every code cell is the
    one that ran. A code cell added, removed or changed raises, naming it and the command that
    reruns notebook ``name`` in ``profile``."""
    ran = [c for c in executed.cells if c.cell_type == "code"]
    now = [c for c in clean.cells if c.cell_type == "code"]
    for i in range(max(len(ran), len(now))):
        if i >= len(ran) or i >= len(now) or ran[i].source != now[i].source:
            raise XlirError(f"The executed copy of {name} is of another version of it: its code cell {i + 1} "
                            "differs from the notebook's. Rerun the notebook (`make reproduce`, or "
                            f"`{rerun_command(name, profile)}`) to refresh its outputs.")
    out = copy.deepcopy(clean)
    out.metadata = copy.deepcopy(executed.metadata)
    outputs = iter(ran)
    for c in out.cells:
        if c.cell_type == "code":
            r = next(outputs)
            c.outputs, c.execution_count = copy.deepcopy(r.outputs), r.execution_count
    return out


def refresh_prose(profile: str = "quick") -> tuple[list[Path], list[str]]:
    """Rewrite each executed copy of ``profile`` whose notebook's prose changed since it ran
    (``make figures``, after the runtime rows); returns the copies rewritten and, for a copy
    whose code no longer matches its notebook, the message saying to rerun it."""
    written, stale = [], []
    for path in sorted(executed_dir(profile).glob("0*.ipynb")):
        clean = paths.project_root() / "notebooks" / path.name
        if not clean.is_file():
            continue
        name = f"notebooks/{path.name}"
        try:
            executed = nbformat.read(path, as_version=4)
        except Exception as exc:  # noqa: BLE001 - nbformat raises JSON, validation and OS errors
            stale.append(f"{path} is unreadable ({type(exc).__name__}: {exc}): rerun "
                         f"`{rerun_command(name, profile)}` to write it again.")
            continue
        try:
            new = with_prose_of(nbformat.read(clean, as_version=4), executed, name, profile)
        except XlirError as exc:
            stale.append(str(exc))
            continue
        if new != executed:
            atomic_write_bytes((nbformat.writes(new) + "\n").encode(), path)
            written.append(path)
    return written, stale
