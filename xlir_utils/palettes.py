"""The kit's colours: one palette per kind of thing, the same in every figure (notebooks 02-05).

* samplings (X-X, X-Y, hybrid): :data:`SAMPLING_COLOURS`;
* settings (mono, cross, multi): :data:`SETTING_COLOURS`; rank distance, a measure of the pooled
  (multi) ranking, is drawn in the multi colour;
* languages: :data:`xlir_utils.languages.LANG_COLOURS` (also the explorer's);
* system groups (zero-shot, full, code-switching, adapters, post-hoc):
  :data:`xlir_utils.systems.labels.GROUP_COLOURS`.

The sampling and setting hues differ from each other and from the group hues, so that a colour
means one thing wherever it appears.
"""
from __future__ import annotations

SAMPLING_COLOURS = {"X-X": "#1b9e77", "X-Y": "#e6ab02", "hybrid": "#7570b3"}  # teal, mustard, slate purple
SETTING_COLOURS = {"mono": "#e7298a", "cross": "#a6761d", "multi": "#252525"}  # magenta, brown, near-black
OTHER = "#7f7f7f"


def sampling_colour(sampling: str | None) -> str:
    """The colour of a sampling (grey for anything else, e.g. an adapter variant's run)."""
    return SAMPLING_COLOURS.get(sampling or "", OTHER)


def setting_colour(setting: str) -> str:
    """The colour of a setting (grey for anything else)."""
    return SETTING_COLOURS.get(setting, OTHER)
