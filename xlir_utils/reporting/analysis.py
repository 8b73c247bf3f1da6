"""Which systems the analyses compare, chosen from the system columns of the results, never from
their names (notebooks 03 §6, 04 §7, 05 §3)."""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ..systems.labels import systems_where


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per system, without post-hoc methods."""
    first = frame.drop_duplicates("system")
    return first[first.post_hoc.isna()]


def full_system(frame: pd.DataFrame, sampling: str, alpha: float) -> str | None:
    """The full fine-tuning system of ``sampling`` (hybrid at the profile's ``alpha``, not a sweep
    point): the reference of notebook 04 §§6-7's paired differences."""
    columns = {"sampling": sampling} if sampling != "hybrid" else {"sampling": sampling, "alpha": float(alpha)}
    found = systems_where(_plain(frame), family="full", **columns)
    return found[0] if found else None


def headline_rows(frame: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """The rows of the headline table and figure (README, ``make figures``): every system without a
    post-hoc method, and post-hoc rows (LIR, LEACE) only of the zero-shot encoders and of X-X, X-Y
    and hybrid at the profile's ``alpha`` (every system's are in results/ and notebook 05 §5)."""
    main = frame.family.eq("zero-shot") | (frame.family.eq("full") & (frame.sampling.ne("hybrid")
                                                                      | frame.alpha.eq(float(alpha))))
    return frame[frame.post_hoc.isna() | main]


def headline_comparisons(frame: pd.DataFrame, alpha: float) -> list[tuple[str, str]]:
    """The paired comparisons the paper's claim needs: hybrid - X-X and hybrid - X-Y (notebook 04 §7)."""
    hybrid = full_system(frame, "hybrid", alpha)
    others = [full_system(frame, s, alpha) for s in ("X-X", "X-Y")]
    return [(hybrid, o) for o in others if hybrid and o]


def adapter_comparisons(frame: pd.DataFrame, alpha: float) -> list[tuple[str, str]]:
    """The comparisons the kit's own question needs (notebooks 03 §6, 04 §7): every adapter variant
    against full fine-tuning with hybrid batches, and every per-side variant's routing of never-seen
    languages (through the English adapter, through none) against its own routing."""
    plain = _plain(frame)
    adapters = plain[plain.family == "adapters"]
    hybrid = full_system(frame, "hybrid", alpha)
    pairs = [(s, hybrid) for s in adapters.system] if hybrid else []
    for row in adapters[adapters.unseen_routing.isin(["en", "none"])].itertuples():
        own = systems_where(adapters, adapter_variant=row.adapter_variant, unseen_routing="own")
        pairs += [(row.system, own[0])] if own else []
    return pairs


def code_switching_comparisons(frame: pd.DataFrame, alpha: float) -> list[tuple[str, str]]:
    """The comparisons code-switched training needs (notebook 04 §7): every code-switched system
    against hybrid, *CS* against X-X (does switching help monolingual batches?) and *CS + hybrid*
    against hybrid."""
    plain = _plain(frame)
    hybrid, xx = full_system(frame, "hybrid", alpha), full_system(frame, "X-X", alpha)
    pairs = []
    for row in plain[plain.family == "code-switching"].drop_duplicates("system").itertuples():
        reference = xx if row.sampling == "X-X" else hybrid
        pairs += [(row.system, hybrid)] if hybrid else []
        pairs += [(row.system, reference)] if reference and reference != hybrid else []
    return pairs


def heatmap_systems(results: pd.DataFrame, baselines: Sequence[str],
                    alpha: float) -> tuple[list[str], tuple[str, str] | None]:
    """The systems of the language-pair heatmaps (the first baseline, the X-X and the hybrid
    system) and the difference to draw (hybrid - X-X) (notebook 05 §3)."""
    frame = results if "system" in results.columns else results.assign(system=results.model)
    xx, hy = full_system(frame, "X-X", alpha), full_system(frame, "hybrid", alpha)
    first = next((b for b in baselines if b in set(frame.system)), None)
    models = [m for m in (first, xx, hy) if m is not None]
    return models, (xx, hy) if xx and hy else None
