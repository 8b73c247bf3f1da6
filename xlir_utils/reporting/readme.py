"""The README's generated blocks, from ``results/`` (``make figures``, quick profile): every
system's seed means, and the adapter variants against full fine-tuning with hybrid batches."""
from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from .. import outputs, paths
from ..config import load
from ..io_utils import atomic_write_bytes
from ..systems.labels import describe, system_order
from .analysis import full_system, headline_rows
from .tables import read_seed_means


def results_markdown(profile: str = "quick", dataset: str = "xquad-r") -> str:
    """The README's results block: seed means with their 95 % intervals (queries and seeds) on
    ``dataset``, and rank distance, one row per system of :func:`~.analysis.headline_rows`, from results/."""
    seed_means = read_seed_means(profile)
    cfg = load(profile)
    baselines = cfg.baselines
    rows = headline_rows(seed_means[seed_means.dataset == dataset], cfg.train.alpha)
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


def _delta(rows: pd.DataFrame, a: str, b: str, setting: str, metric: str) -> str:
    hit = rows[(rows.a == a) & (rows.b == b) & (rows.setting == setting) & (rows.metric == metric)]
    if hit.empty:
        return ""
    r, fmt = hit.iloc[0], ("+.0f" if metric == "rank_distance" else "+.3f")
    return f"{r.delta:{fmt}} [{r.ci_low:{fmt}}, {r.ci_high:{fmt}}]"


def adapters_markdown(profile: str = "quick", dataset: str = "xquad-r") -> str:
    """The README's adapter block: every adapter variant minus full fine-tuning with hybrid
    batches on ``dataset`` (mono, cross, multi mAP; rank distance), then on the queries in the
    languages no training batch held (multi mAP; each per-side routing against its own routing
    too), with 95 % intervals over queries and seeds, from results/ (notebook 04 §7)."""
    cfg = load(profile)
    folder = paths.results_dir(profile)
    means = read_seed_means(profile, with_post_hoc=False) if (folder / outputs.SEED_MEANS_FILE).is_file() else None
    rows = means[(means.dataset == dataset) & (means.family == "adapters")] if means is not None else None
    if rows is None or rows.empty or not (folder / outputs.SEED_COMPARISONS_FILE).is_file():
        return "(notebook 04 has not compared the adapter variants in this profile yet)"
    comparisons = outputs.read_table(outputs.SEED_COMPARISONS_FILE, profile)
    unseen = outputs.read_table(outputs.UNSEEN_COMPARISONS_FILE, profile) \
        if (folder / outputs.UNSEEN_COMPARISONS_FILE).is_file() else comparisons.iloc[:0]
    hybrid = full_system(means, "hybrid", cfg.train.alpha)
    order = system_order(rows.assign(model=rows.system), cfg.baselines)
    unseen_set = unseen.dataset.iat[0] if len(unseen) else "the never-trained languages' queries (not in results/)"
    seeds = sorted({int(n) for n in rows.n_seeds.dropna()})
    head = ["variant (system)", "Δ Mo. mAP", "Δ Cr. mAP", "Δ Mul. mAP", "Δ rank distance",
            f"Δ Mul. mAP, {unseen_set}", "the same, against its own routing"]
    lines = [f"Each cell: system − {hybrid} (or − the variant routed through its own adapters), seed means "
             f"over {'/'.join(map(str, seeds))} seeds with 95 % intervals over queries and seeds.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for system in order:
        own = comparisons[(comparisons.a == system) & (comparisons.b != hybrid)].b
        cells = [f"{describe(rows[rows.system == system].iloc[0])} (`{system}`)",
                 *[_delta(comparisons[comparisons.dataset == dataset], system, hybrid, setting, metric)
                   for setting, metric in (("mono", "map"), ("cross", "map"), ("multi", "map"),
                                           ("multi", "rank_distance"))],
                 _delta(unseen, system, hybrid, "multi", "map"),
                 _delta(unseen, system, own.iat[0], "multi", "map") if len(own) else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


README_MARKERS = ("<!-- RESULTS:BEGIN (make figures writes this block from results/) -->", "<!-- RESULTS:END -->")
ADAPTER_MARKERS = ("<!-- ADAPTERS:BEGIN (make figures writes this block from results/) -->", "<!-- ADAPTERS:END -->")
BLOCKS: dict[tuple[str, str], Callable[[str], str]] = {README_MARKERS: results_markdown, ADAPTER_MARKERS: adapters_markdown}


def replace_block(text: str, markers: tuple[str, str], body: str) -> str:
    """``text`` with what lies between the two marker lines replaced by ``body`` (unchanged when a
    marker is missing): how every generated block of the README is written (``make figures``)."""
    begin, end = markers
    if begin not in text or end not in text:
        return text
    return text[: text.index(begin) + len(begin)] + "\n" + body + "\n" + text[text.index(end):]


def update_readme(profile: str = "quick") -> bool:
    """Rewrite the README's generated blocks (:data:`BLOCKS`) from results/; returns whether it changed."""
    readme = paths.project_root() / "README.md"
    text = original = readme.read_text()
    for markers, render in BLOCKS.items():
        if all(m in text for m in markers):
            text = replace_block(text, markers, render(profile))
    if text != original:
        atomic_write_bytes(text.encode(), readme)
    return text != original
