"""How result rows are described, grouped, ordered and coloured: from the system columns
(:data:`~xlir_utils.systems.record.SPEC_COLUMNS`) and the profile's baselines, never from a
system's name (notebooks 04-06, ``make figures``).

Groups, in reading order: ``zero-shot`` (an off-the-shelf encoder, in the order of
``cfg.baselines``), ``full`` (full fine-tuning: X-X, X-Y, hybrid, by α), ``code-switching``,
``adapters`` (notebook 03's variants) and ``post-hoc`` (a method such as LIR applied to a
system's embeddings; ordered like the systems they were applied to).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from .record import FAMILIES, SAMPLINGS, SPEC_COLUMNS

GROUPS = ("zero-shot", "full", "code-switching", "adapters", "post-hoc")
GROUP_COLOURS = {"zero-shot": "#8c8c8c", "full": "#4c72b0", "code-switching": "#dd8452", "adapters": "#55a868",
                 "post-hoc": "#c44e52"}
ROUTING_WORDS = {"own": "its own adapter", "en": "the English adapter", "none": "no language adapter"}


def _value(row, column: str):
    """A spec column of a row (a mapping, a namedtuple or a Series); None where absent or NaN."""
    value = row.get(column) if isinstance(row, Mapping | pd.Series) else getattr(row, column, None)
    return None if value is None or (isinstance(value, float) and value != value) else value


def display_group(row) -> str:
    """The group a system is shown in (see the module docstring; notebook 04 §4's figures)."""
    return "post-hoc" if _value(row, "post_hoc") else _value(row, "family")


def describe(row) -> str:
    """A short human description of a system from its columns, e.g. ``hybrid α=0.5``,
    ``adapters: joint-per-side, unseen → en (hybrid α=0.5)``, ``X-X + LIR r=1 (fit: evaluation pool)``
    (notebook 04 §2's system table, the tables' ``description`` column, notebook 06 §1)."""
    family, sampling, alpha = _value(row, "family"), _value(row, "sampling"), _value(row, "alpha")
    training = sampling if sampling in ("X-X", "X-Y") or sampling is None else f"{sampling} α={alpha:g}"
    if family == "zero-shot":
        text = "zero-shot"
    elif family == "adapters":
        text = f"adapters: {_value(row, 'adapter_variant')}"
        routing = _value(row, "unseen_routing")
        if routing in ("en", "none"):
            text += f", unseen → {routing}"
        text += f" ({training})"
    elif family == "code-switching":
        text = f"code-switching ({training})"
    else:
        text = training
    if _value(row, "post_hoc"):
        text += f" + {_value(row, 'post_hoc')} (fit: {_value(row, 'post_hoc_fit')})"
    return text


def describe_frame(frame: pd.DataFrame) -> pd.Series:
    """:func:`describe` of every row of a results table (notebooks 04 §4, 05 §5)."""
    return pd.Series([describe(r) for r in frame[[c for c in SPEC_COLUMNS if c in frame]].to_dict("records")],
                     index=frame.index, dtype=object)


def system_order(results: pd.DataFrame, baselines: Sequence[str] = ()) -> list[str]:
    """Systems (``model`` values) in reading order: by group; baselines in ``baselines`` order (then
    first appearance); trained systems by family, sampling, α and name; post-hoc rows like the
    systems they were applied to."""
    first = results.drop_duplicates("model").reset_index(drop=True)
    base_rank = {m: i for i, m in enumerate(baselines)}
    records = first.to_dict("records")

    def key(i_row):
        i, row = i_row
        family = _value(row, "family")
        within = (base_rank.get(_value(row, "base_model"), len(base_rank)), i) if family == "zero-shot" else \
            (SAMPLINGS.index(_value(row, "sampling")) if _value(row, "sampling") else 0, _value(row, "alpha") or 0.0)
        return (GROUPS.index(display_group(row)), FAMILIES.index(family), *within, str(row["model"]))

    return [row["model"] for _, row in sorted(enumerate(records), key=key)]


def system_colours(results: pd.DataFrame, models: Sequence[str]) -> list[str]:
    """One colour per model, by its group."""
    first = results.drop_duplicates("model").set_index("model")
    return [GROUP_COLOURS[display_group(first.loc[m])] for m in models]


def mean_over_seeds(results: pd.DataFrame) -> pd.DataFrame:
    """Tidy result rows averaged over each system's seeds, with the system as ``model`` (per-language
    tables and figures of notebooks 04 and 05; headline numbers and intervals come from
    :mod:`xlir_utils.seed_statistics`)."""
    if "system" not in results.columns:
        return results
    keys = ["system", *[c for c in SPEC_COLUMNS if c in results], "dataset", "setting", "query_lang", "cand_lang",
            "metric"]
    out = results.groupby(keys, sort=False, dropna=False).value.mean().reset_index()
    return out.assign(model=out.system)


def systems_where(frame: pd.DataFrame, **columns) -> list[str]:
    """The systems (``system`` values, in order of appearance) whose columns equal ``columns``
    (None matches a missing value): e.g. ``systems_where(t, family="full", sampling="hybrid")``."""
    mask = pd.Series(True, index=frame.index)
    for column, value in columns.items():
        mask &= frame[column].isna() if value is None else frame[column].eq(value)
    return list(dict.fromkeys(frame.system[mask]))
