"""An executed notebook made small enough to commit (``make reproduce``'s copies in
``notebooks/executed/``, :mod:`xlir_utils.notebook_runs`): figures as palette PNGs, progress bars
as their final text, no widget state and no per-cell timestamps.
"""
from __future__ import annotations

import base64
import html
import io

import nbformat
from PIL import Image

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


def slim(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """An executed notebook without what a static reader cannot use: widget state (a progress
    bar's output shows its final text, :func:`progress_texts`; another widget a line saying it is
    one) and per-cell execution timestamps; figures as palette PNGs (:func:`smaller_png`)."""
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
