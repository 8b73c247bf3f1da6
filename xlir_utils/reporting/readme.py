"""The README's results block, generated from ``results/`` (``make figures``, quick profile)."""
from __future__ import annotations

from .. import paths
from ..config import load
from ..io_utils import atomic_write_bytes
from ..systems.labels import describe, system_order
from .tables import read_seed_means


def results_markdown(profile: str = "quick", dataset: str = "xquad-r") -> str:
    """The README's results block: seed means with their 95 % intervals (queries and seeds) on
    ``dataset``, and rank distance, one row per system, from results/."""
    seed_means = read_seed_means(profile)
    baselines = load(profile).baselines
    rows = seed_means[seed_means.dataset == dataset]
    order = system_order(rows.assign(model=rows.system), baselines)
    head = ["system", "description", "seeds", "Mo. mAP", "Cr. mAP", "Mul. mAP", "rank distance"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for system in order:
        r = rows[rows.system == system]
        cells = [system, describe(r.iloc[0]), str(int(r.n_seeds.max()))]
        for setting, metric, fmt in (("mono", "map", ".3f"), ("cross", "map", ".3f"), ("multi", "map", ".3f"),
                                     ("multi", "rank_distance", ".0f")):
            hit = r[(r.setting == setting) & (r.metric == metric)]
            cells.append("" if hit.empty else
                         f"{hit['mean'].iat[0]:{fmt}} [{hit.ci_low.iat[0]:{fmt}}, {hit.ci_high.iat[0]:{fmt}}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


README_MARKERS = ("<!-- RESULTS:BEGIN (make figures writes this block from results/) -->", "<!-- RESULTS:END -->")


def update_readme(profile: str = "quick") -> bool:
    """Rewrite the README's results block from results/; returns whether it changed."""
    readme = paths.project_root() / "README.md"
    text = readme.read_text()
    begin, end = README_MARKERS
    if begin not in text or end not in text:
        return False
    new = text[: text.index(begin) + len(begin)] + "\n" + results_markdown(profile) + "\n" + text[text.index(end):]
    if new != text:
        atomic_write_bytes(new.encode(), readme)
    return new != text
