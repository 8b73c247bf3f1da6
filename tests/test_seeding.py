"""Derived seeds: one independent stream per purpose and language."""
import numpy as np

from xlir_utils.config import XQUAD_R_LANGS
from xlir_utils.seeding import derived_seed


def test_no_two_languages_share_a_seed():
    seeds = {lang: derived_seed(13, "adapter-init", lang) for lang in XQUAD_R_LANGS}
    assert len(set(seeds.values())) == len(XQUAD_R_LANGS)
    # the old rule, 13 + sum of code points, gave ar and en (and el and hi) one stream
    old = {lang: 13 + sum(map(ord, lang)) for lang in XQUAD_R_LANGS}
    assert old["ar"] == old["en"] and old["el"] == old["hi"]
    assert seeds["ar"] != seeds["en"] and seeds["el"] != seeds["hi"]


def test_seeds_are_stable_and_keyed_by_every_part():
    assert derived_seed(13, "a", "bc") == derived_seed(13, "a", "bc")
    assert derived_seed(13, "a", "bc") != derived_seed(13, "ab", "c")
    assert derived_seed(13, "x") != derived_seed(14, "x")
    assert derived_seed(13, 1) != derived_seed(13, "1")
    s = derived_seed(13, "lang", "de")
    assert 0 <= s < 2**63
    np.random.default_rng(s)  # usable as a numpy seed (and by torch.manual_seed)
