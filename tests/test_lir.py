"""Language information removal on synthetic embeddings with a known language offset."""
import numpy as np

from xlir_utils.lir import project_out_language_directions


def test_lir_removes_a_language_offset():
    rng = np.random.default_rng(0)
    n, d = 200, 32
    content = rng.normal(size=(n, d))
    offsets = {"a": rng.normal(size=d) * 4, "b": rng.normal(size=d) * 4}

    def side(lang, noise):
        x = content + offsets[lang] + noise * rng.normal(size=(n, d))
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    q = side("a", 0.1)
    c = np.vstack([side("a", 0.1), side("b", 0.1)])
    c_langs = ["a"] * n + ["b"] * n

    def twin_rank(qe, ce):  # median pooled rank of each query's other-language twin
        s = qe @ ce.T
        twin = s[np.arange(n), n + np.arange(n)]
        return np.median((s > twin[:, None]).sum(1) + 1)

    before = twin_rank(q, c)
    q2, c2 = project_out_language_directions(q, ["a"] * n, c, c_langs, rank=1)
    after = twin_rank(q2, c2)
    assert before > n / 2  # with the offset, every same-language candidate comes first
    assert after <= 3  # without it, the twin sits right behind the same-language answer
    assert np.allclose(np.linalg.norm(c2, axis=1), 1, atol=1e-5)
