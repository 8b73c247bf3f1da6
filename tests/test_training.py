"""Contrastive training on the real offline encoder and real MLQA-R pairs (tiny budget)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from xlir_utils import config
from xlir_utils.data import build_pairs, load_retrieval_set
from xlir_utils.encoders.registry import load_encoder
from xlir_utils.training import embed, info_nce, make_spec, set_trainable, train_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pairs(shared_data):
    return build_pairs(load_retrieval_set("mlqa-r", articles=3))


def _model(max_len: int = 32):
    model = load_encoder("e5-small-offline")
    model.max_seq_length = max_len
    set_trainable(model, freeze_word_embeddings=True)
    return model


def _tiny(steps: int, **kw) -> config.TrainConfig:
    return dataclasses.replace(config.load("smoke").train, steps=steps, batch_size=8, max_seq_length=32, **kw)


def test_info_nce_prefers_aligned_pairs():
    torch.manual_seed(0)
    q = torch.randn(6, 16)
    aligned = info_nce(q, q + 0.01 * torch.randn(6, 16), 0.05)
    shuffled = info_nce(q, q.roll(1, dims=0), 0.05)
    assert aligned < 0.01 < shuffled
    # the temperature sharpens: the same aligned pairs at tau = 1 give a higher loss
    assert info_nce(q, q, 1.0) > info_nce(q, q, 0.05)


def test_short_training_lowers_the_loss(pairs, tmp_path):
    cfg = _tiny(6, lr=1e-4, warmup_ratio=0.0)
    spec = make_spec("t", "e5-small-offline", "hybrid", cfg, 13, pairs)
    model = _model()
    held = pairs.sample(16, random_state=1).drop_duplicates("question_id")

    def held_loss():
        model.eval()
        with torch.no_grad():
            q = embed(model, held["query"].tolist(), held.query_lang.tolist(), "query")
            p = embed(model, held["passage"].tolist(), held.passage_lang.tolist(), "passage")
        return info_nce(q, p, cfg.temperature).item()

    before = held_loss()
    record = train_run(model, pairs, spec, tmp_path / "run", show_progress=False)
    after = held_loss()
    assert record["finished"] and record["steps"] == 6
    assert after < before - 0.01, (before, after)
    assert (tmp_path / "run/model/config_sentence_transformers.json").is_file()
    assert not (tmp_path / "run/checkpoint.pt").exists()


def test_resume_gives_the_same_weights(pairs, tmp_path):
    cfg = _tiny(4, checkpoint_every=100)
    spec = make_spec("r", "e5-small-offline", "hybrid", cfg, 7, pairs)
    straight = _model()
    train_run(straight, pairs, spec, tmp_path / "a", show_progress=False)

    interrupted = _model()
    out = train_run(interrupted, pairs, spec, tmp_path / "b", stop_after=2, show_progress=False)
    assert out == {"finished": False, "step": 2} and (tmp_path / "b/checkpoint.pt").is_file()
    resumed = _model()  # a fresh process would start from the base model again
    train_run(resumed, pairs, spec, tmp_path / "b", show_progress=False)
    a, b = dict(straight.named_parameters()), dict(resumed.named_parameters())
    assert all(torch.equal(a[n], b[n]) for n in a)
    changed = [n for n, p in _model().named_parameters() if not torch.equal(p, a[n])]
    assert changed and not any("word_embeddings" in n for n in changed)


def test_finished_run_is_reused_and_recipe_change_retrains(pairs, tmp_path):
    cfg = _tiny(2)
    spec = make_spec("u", "e5-small-offline", "X-Y", cfg, 3, pairs)
    first = train_run(_model(), pairs, spec, tmp_path / "u", show_progress=False)
    assert first["mono_share"] == 0.0
    again = train_run(None, pairs, spec, tmp_path / "u", show_progress=False)  # no model needed
    assert again == first
    other = make_spec("u", "e5-small-offline", "X-X", cfg, 3, pairs)
    assert train_run(_model(), pairs, other, tmp_path / "u", show_progress=False)["mono_share"] == 1.0


def test_unknown_sampling_is_rejected(pairs):
    with pytest.raises(ValueError, match="Unknown sampling"):
        make_spec("x", "m", "X-Z", _tiny(1), 0, pairs)
