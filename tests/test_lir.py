"""Language information removal on synthetic embeddings with a known language offset; its fit and
apply steps (the explorer projects a typed question with the set's directions)."""
import numpy as np

from xlir_utils.lir import fit_language_directions, project_out_language_directions, remove_language_information


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


def test_fit_then_apply_is_the_projection_and_works_row_by_row():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(30, 16)).astype(np.float32)
    c = rng.normal(size=(50, 16)).astype(np.float32)
    q_langs = np.array(["a", "b", "c"] * 10)
    c_langs = np.array(["a", "b"] * 25)
    q2, c2 = project_out_language_directions(q, q_langs, c, c_langs, rank=2)
    dirs = fit_language_directions(q, q_langs, c, c_langs, rank=2)
    assert sorted(dirs) == ["a", "b", "c"] and dirs["a"].shape == (2, 16)
    np.testing.assert_array_equal(remove_language_information(q, q_langs, dirs), q2)
    np.testing.assert_array_equal(remove_language_information(c, c_langs, dirs), c2)
    # one vector at a time (a typed question) gets what it gets inside the set
    for i in (0, 4, 29):
        one = remove_language_information(q[i:i + 1], [q_langs[i]], dirs)[0]
        np.testing.assert_allclose(one, q2[i], atol=1e-6)
        np.testing.assert_allclose(dirs[q_langs[i]] @ one, 0, atol=1e-6)  # nothing left on its directions
    # a language without directions is only re-normalised
    other = remove_language_information(q[:1], ["zz"], dirs)[0]
    np.testing.assert_allclose(other, q[0] / np.linalg.norm(q[0]), atol=1e-6)
