"""Systems are ordered, coloured and given an alpha from their training column, never their names."""
import pandas as pd
import pytest

from xlir_utils.system_labels import KIND_COLOURS, system_colours, system_kind, system_order, training_alpha


def _rows(pairs):
    return pd.DataFrame([{"model": m, "training": t} for m, t in pairs])


def test_paper_profile_baselines_come_first_in_their_order():
    """xlm-roberta-base used to be sorted after the LIR rows (its name matched no pattern)."""
    results = _rows([
        ("lir-r1", "LIR r=1 on xlm-roberta-base"), ("full-hybrid", "hybrid"), ("e5-small-offline", "zero-shot"),
        ("sentence-transformers/LaBSE", "zero-shot"), ("xlm-roberta-base", "zero-shot"), ("full-X-X", "X-X"),
        ("full-hybrid-a0.25", "hybrid (alpha=0.25)"), ("adapters-english", "adapters: english (hybrid)"),
        ("full-X-Y", "X-Y"),
    ])
    order = system_order(results, ("xlm-roberta-base", "sentence-transformers/LaBSE", "e5-small-offline"))
    assert order == ["xlm-roberta-base", "sentence-transformers/LaBSE", "e5-small-offline", "full-X-X",
                     "full-X-Y", "full-hybrid-a0.25", "full-hybrid", "adapters-english", "lir-r1"]
    assert system_colours(results, ["xlm-roberta-base", "full-X-X", "lir-r1"]) == [
        KIND_COLOURS["zero-shot"], KIND_COLOURS["full"], KIND_COLOURS["post-hoc"]]


def test_a_name_says_nothing():
    results = _rows([("e5-looking-run", "X-Y"), ("my-encoder", "zero-shot")])
    assert system_order(results) == ["my-encoder", "e5-looking-run"]


def test_alpha_from_training():
    assert training_alpha("X-X") == 1.0 and training_alpha("X-Y") == 0.0
    assert training_alpha("hybrid", 0.5) == 0.5 and training_alpha("hybrid (alpha=0.75)") == 0.75
    assert training_alpha("zero-shot") is None and training_alpha("LIR r=1 on x") is None
    with pytest.raises(ValueError, match="unknown training"):
        system_kind("something else")
