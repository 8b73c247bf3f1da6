"""The kit's languages in reading order and their colours (every figure and the explorer)."""
from __future__ import annotations

LANG_ORDER = ("en", "de", "es", "ar", "hi", "vi", "zh", "el", "ru", "th", "tr")  # trained first, then never-seen
# One colour per language in every figure and in the explorer (matplotlib's tab20, in LANG_ORDER).
LANG_COLOURS = dict(zip(LANG_ORDER, ("#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728",
                                     "#ff9896", "#9467bd", "#c5b0d5", "#8c564b")))


def lang_colour(lang: str) -> str:
    """The kit's colour of a language (grey for one outside :data:`LANG_ORDER`)."""
    return LANG_COLOURS.get(lang, "#7f7f7f")
