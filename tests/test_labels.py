"""Systems are described, ordered and coloured from their columns, never their names."""
import pandas as pd
import pytest

from xlir_utils.systems import SystemSpec
from xlir_utils.systems.labels import GROUP_COLOURS, describe, system_colours, system_order, systems_where

E5 = "e5-small-offline"
XX = SystemSpec("full", E5, sampling="X-X", alpha=1)
HYBRID = SystemSpec("full", E5, sampling="hybrid", alpha=0.5)


def _rows(pairs):
    return pd.DataFrame([{"model": m, "system": m, **spec.columns()} for m, spec in pairs])


def test_paper_profile_baselines_come_first_in_their_order():
    """xlm-roberta-base used to be sorted after the LIR rows (its name matched no pattern)."""
    results = _rows([
        ("lir-r1", SystemSpec("zero-shot", "xlm-roberta-base").with_post_hoc("LIR r=1", "evaluation pool")),
        ("full-hybrid", HYBRID), ("e5-small-offline", SystemSpec("zero-shot", E5)),
        ("sentence-transformers/LaBSE", SystemSpec("zero-shot", "sentence-transformers/LaBSE")),
        ("xlm-roberta-base", SystemSpec("zero-shot", "xlm-roberta-base")), ("full-X-X", XX),
        ("full-hybrid-a0.25", SystemSpec("full", E5, sampling="hybrid", alpha=0.25)),
        ("adapters-english", SystemSpec("adapters", E5, sampling="hybrid", alpha=0.5, adapter_variant="english")),
        ("full-X-Y", SystemSpec("full", E5, sampling="X-Y", alpha=0)),
    ])
    order = system_order(results, ("xlm-roberta-base", "sentence-transformers/LaBSE", "e5-small-offline"))
    assert order == ["xlm-roberta-base", "sentence-transformers/LaBSE", "e5-small-offline", "full-X-X",
                     "full-X-Y", "full-hybrid-a0.25", "full-hybrid", "adapters-english", "lir-r1"]
    assert system_colours(results, ["xlm-roberta-base", "full-X-X", "lir-r1"]) == [
        GROUP_COLOURS["zero-shot"], GROUP_COLOURS["full"], GROUP_COLOURS["post-hoc"]]


def test_a_name_says_nothing():
    results = _rows([("e5-looking-run", SystemSpec("full", "m", sampling="X-Y", alpha=0)),
                     ("my-encoder", SystemSpec("zero-shot", "my-encoder"))])
    assert system_order(results) == ["my-encoder", "e5-looking-run"]


def test_post_hoc_rows_follow_the_order_of_their_systems():
    lir = lambda spec: spec.with_post_hoc("LIR r=1", "evaluation pool")  # noqa: E731
    results = _rows([("b + LIR", lir(HYBRID)), ("a + LIR", lir(XX)), ("z + LIR", lir(SystemSpec("zero-shot", E5)))])
    assert system_order(results) == ["z + LIR", "a + LIR", "b + LIR"]


def test_descriptions_come_from_the_columns():
    assert describe(XX) == "X-X" and describe(HYBRID) == "hybrid α=0.5"
    routed = SystemSpec("adapters", E5, sampling="hybrid", alpha=0.5, adapter_variant="joint-per-side",
                        unseen_routing="en")
    assert describe(routed) == "adapters: joint-per-side, unseen → en (hybrid α=0.5)"
    assert describe(XX.with_post_hoc("LIR r=1", "evaluation pool")) == "X-X + LIR r=1 (fit: evaluation pool)"
    row = pd.Series(HYBRID.columns()).astype(object).where(pd.Series(HYBRID.columns()).notna(), float("nan"))
    assert describe(row) == "hybrid α=0.5"  # NaN in a CSV row is a missing value


def test_specs_reject_what_they_cannot_mean():
    with pytest.raises(ValueError, match="family"):
        SystemSpec("fine-tuned", E5)
    with pytest.raises(ValueError, match="sampling"):
        SystemSpec("full", E5, sampling="mono")
    with pytest.raises(ValueError, match="fit set"):
        SystemSpec("full", E5, sampling="X-X", alpha=1, post_hoc="LIR r=1")


def test_systems_are_found_by_their_columns():
    results = _rows([("full-X-X", XX), ("full-hybrid", HYBRID),
                     ("full-hybrid-a0.25", SystemSpec("full", E5, sampling="hybrid", alpha=0.25))])
    assert systems_where(results, family="full", sampling="hybrid", alpha=0.5) == ["full-hybrid"]
    assert systems_where(results, post_hoc=None, sampling="X-X") == ["full-X-X"]
