"""Contrastive training on real MLQA-R pairs (tiny budget). The loop's behaviour (learning, resume,
reuse, checkpoints, schedules, freezing, precision) does not depend on the encoder's weights, so a
tiny random BERT with the offline model's tokenizer (``tiny_encoder`` in conftest.py) stands in for
``e5-small-offline``; it has dropout, so exact resumption still needs the restored random state."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from xlir_utils import config
from xlir_utils.data import build_pairs, load_retrieval_set
from xlir_utils.training import embed_with_grad as embed
from xlir_utils.training import info_nce, make_spec, set_trainable, train_run

pytestmark = pytest.mark.slow

ENCODER = "tiny-encoder"  # the name the run specs record


@pytest.fixture(scope="module")
def pairs(shared_data):
    return build_pairs(load_retrieval_set("mlqa-r", articles=3))


@pytest.fixture
def new_model(tiny_encoder):
    """``new_model()``: a fresh tiny encoder set up for full fine-tuning (word embeddings frozen),
    the same initial weights at every call."""
    def make(max_len: int = 32):
        model = tiny_encoder(max_seq_length=max_len)
        set_trainable(model, freeze_word_embeddings=True)
        return model

    return make


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


def test_short_training_lowers_the_loss(pairs, tmp_path, new_model):
    cfg = _tiny(6, lr=1e-3, warmup_ratio=0.0)
    spec = make_spec("t", ENCODER, "hybrid", cfg, 13, pairs)
    model = new_model()
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


def test_resume_gives_the_same_weights(pairs, tmp_path, new_model):
    cfg = _tiny(4, checkpoint_every=100)
    spec = make_spec("r", ENCODER, "hybrid", cfg, 7, pairs)
    straight = new_model()
    train_run(straight, pairs, spec, tmp_path / "a", show_progress=False)

    interrupted = new_model()
    out = train_run(interrupted, pairs, spec, tmp_path / "b", stop_after=2, show_progress=False)
    assert out == {"finished": False, "step": 2} and (tmp_path / "b/checkpoint.pt").is_file()
    resumed = new_model()  # a fresh process would start from the base model again
    train_run(resumed, pairs, spec, tmp_path / "b", show_progress=False)
    a, b = dict(straight.named_parameters()), dict(resumed.named_parameters())
    assert all(torch.equal(a[n], b[n]) for n in a)
    changed = [n for n, p in new_model().named_parameters() if not torch.equal(p, a[n])]
    assert changed and not any("word_embeddings" in n for n in changed)


def test_finished_run_is_reused_and_recipe_change_retrains(pairs, tmp_path, new_model):
    cfg = _tiny(2)
    spec = make_spec("u", ENCODER, "X-Y", cfg, 3, pairs)
    first = train_run(new_model(), pairs, spec, tmp_path / "u", show_progress=False)
    assert first["mono_share"] == 0.0
    again = train_run(None, pairs, spec, tmp_path / "u", show_progress=False)  # no model needed
    assert again == first
    other = make_spec("u", ENCODER, "X-X", cfg, 3, pairs)
    assert train_run(new_model(), pairs, other, tmp_path / "u", show_progress=False)["mono_share"] == 1.0


def test_unknown_sampling_is_rejected(pairs):
    with pytest.raises(ValueError, match="Unknown sampling"):
        make_spec("x", "m", "X-Z", _tiny(1), 0, pairs)


def test_alpha_sweep_points_reuse_the_runs_they_are(pairs, tmp_path, monkeypatch, new_model):
    """Hybrid at alpha 0, 0.5 (the profile's) and 1 are the X-Y, hybrid and X-X runs: no retraining."""
    import json

    from xlir_utils import training

    cfg = config.load("smoke").replace(train={"steps": 2, "batch_size": 8, "max_seq_length": 32})
    trained = []

    def fake_train_run(model, p, spec, run_dir, **kw):  # records the run as finished, as train_run does
        trained.append(spec.name)
        run_dir.mkdir(parents=True, exist_ok=True)
        record = {"digest": spec.digest(), "finished": True, "spec": {"name": spec.name}}
        (run_dir / "run.json").write_text(json.dumps(record))
        return record

    monkeypatch.setattr(training.runs, "train_run", fake_train_run)  # where train_full looks them up
    monkeypatch.setattr(training.runs, "load_encoder", lambda *a, **k: new_model())
    for sampling in training.SAMPLINGS:
        training.train_full(cfg, sampling, pairs, runs_root=tmp_path)
    assert trained == ["full-X-X-s13", "full-X-Y-s13", "full-hybrid-s13"]
    sweep = {a: training.train_full(cfg, "hybrid", pairs, alpha=a, runs_root=tmp_path) for a in (0.0, 0.5, 1.0)}
    assert trained == ["full-X-X-s13", "full-X-Y-s13", "full-hybrid-s13"]  # nothing retrained
    assert [sweep[a]["spec"]["name"] for a in (0.0, 0.5, 1.0)] == ["full-X-Y-s13", "full-hybrid-s13", "full-X-X-s13"]
    training.train_full(cfg, "hybrid", pairs, alpha=0.25, seed=14, runs_root=tmp_path)
    assert trained[-1] == "full-hybrid-a0.25-s14"


def test_damaged_checkpoint_restarts_cleanly(pairs, tmp_path, caplog, new_model):
    """A truncated checkpoint.pt used to stop every rerun with torch's raw unpickling error."""
    cfg = _tiny(3, checkpoint_every=100)
    spec = make_spec("c", ENCODER, "hybrid", cfg, 5, pairs)
    straight = new_model()
    train_run(straight, pairs, spec, tmp_path / "a", show_progress=False)
    train_run(new_model(), pairs, spec, tmp_path / "b", stop_after=1, show_progress=False)
    ckpt = tmp_path / "b" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    resumed = new_model()
    with caplog.at_level("WARNING"):
        record = train_run(resumed, pairs, spec, tmp_path / "b", show_progress=False)
    assert record["finished"] and "unreadable" in caplog.text and str(ckpt) in caplog.text
    a, b = dict(straight.named_parameters()), dict(resumed.named_parameters())
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["model", "run.json", "train_log.csv"]


def test_resume_restores_the_cuda_random_state_when_present(pairs, tmp_path, monkeypatch, new_model):
    from xlir_utils import training

    first, second = new_model(), new_model()  # loaded (on the CPU) before CUDA is faked
    saved, restored = [], []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: saved.append(1) or [torch.tensor([7], dtype=torch.uint8)])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: restored.append(states))
    cfg = _tiny(2, checkpoint_every=100, precision="fp32")  # "auto" would ask the faked CUDA for bf16
    spec = make_spec("g", ENCODER, "hybrid", cfg, 5, pairs)
    training.train_run(first, pairs, spec, tmp_path / "g", stop_after=1, show_progress=False)
    assert saved
    training.train_run(second, pairs, spec, tmp_path / "g", show_progress=False)
    assert restored and restored[0][0].tolist() == [7]


def test_a_stale_swap_folder_does_not_block_saving(pairs, tmp_path, new_model):
    """A kill during the model-folder swap left model.old / model.tmp; saving then failed (ENOTEMPTY)."""
    cfg = _tiny(1)
    run = tmp_path / "s"
    (run / "model.old" / "1_Pooling").mkdir(parents=True)
    (run / "model.tmp").mkdir()
    (run / "model.tmp" / "model.safetensors").write_bytes(b"half a model")
    record = train_run(new_model(), pairs, make_spec("s", ENCODER, "X-Y", cfg, 1, pairs), run,
                       show_progress=False)
    assert record["finished"]
    assert sorted(p.name for p in run.iterdir()) == ["model", "run.json", "train_log.csv"]


def test_constant_schedule_makes_early_stopping_exact(pairs, tmp_path, new_model):
    """Warm-up then constant: the model after step 2 of a 4-step run *is* a 2-step run."""
    cfg4 = _tiny(4, schedule="constant", warmup_steps=1, precision="fp32")
    cfg2 = dataclasses.replace(cfg4, steps=2)
    snap = {}

    def keep_step_2(done, model):
        if done == 2:
            snap.update({n: p.detach().clone() for n, p in model.named_parameters()})

    train_run(new_model(), pairs, make_spec("l", "m", "hybrid", cfg4, 3, pairs), tmp_path / "long",
              on_step=keep_step_2, show_progress=False)
    short = new_model()
    train_run(short, pairs, make_spec("s", "m", "hybrid", cfg2, 3, pairs), tmp_path / "short", show_progress=False)
    assert all(torch.equal(snap[n], p) for n, p in short.named_parameters())


def test_frozen_layers_stay_and_bf16_learns_what_fp32_learns(pairs, tmp_path, tiny_encoder):
    from xlir_utils.training import resolve_train_precision

    base = {n: p.detach().clone() for n, p in tiny_encoder().named_parameters()}
    k = config.load("smoke").train.freeze_layers
    assert 0 < k < len([n for n in base if n.endswith("attention.self.query.weight")])  # layers above k train
    losses = {}
    for precision in ("fp32", "bf16-autocast"):
        model = tiny_encoder(max_seq_length=32)
        set_trainable(model, True, freeze_layers=k)
        cfg = _tiny(3, lr=1e-4, precision=precision)
        record = train_run(model, pairs, make_spec(precision, "m", "hybrid", cfg, 5, pairs), tmp_path / precision,
                           show_progress=False)
        assert record["precision"] == precision
        losses[precision] = pd.read_csv(tmp_path / precision / "train_log.csv").loss.to_numpy()
        after = dict(model.named_parameters())
        frozen = [n for n in base if "embeddings" in n or any(f"layer.{i}." in n for i in range(k))]
        moved = [n for n in base if not torch.equal(base[n], after[n])]
        assert frozen and not set(frozen) & set(moved) and moved
    # bf16 autocast (where the CPU has it; else both are fp32) follows the fp32 loss closely
    assert np.abs(losses["fp32"] - losses["bf16-autocast"]).max() < 0.05
    assert resolve_train_precision("fp32") == "fp32"


def test_the_recipe_digest_names_the_precision_auto_resolves_to(pairs, monkeypatch):
    """A run trained under bf16 autocast on one machine is not reused as the fp32 run of another."""
    from xlir_utils import environment

    cfg = _tiny(2)
    assert cfg.precision == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the CPU's verdict decides
    monkeypatch.setattr(environment, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(environment, "cpu_bf16_faster", lambda: True)
    bf16 = make_spec("p", ENCODER, "hybrid", cfg, 5, pairs)
    monkeypatch.setattr(environment, "cpu_bf16_faster", lambda: False)
    fp32 = make_spec("p", ENCODER, "hybrid", cfg, 5, pairs)
    assert (bf16.train.precision, fp32.train.precision) == ("bf16-autocast", "fp32")
    assert bf16.digest() != fp32.digest()
    assert make_spec("p", ENCODER, "hybrid", dataclasses.replace(cfg, precision="fp32"), 5, pairs).digest() == fp32.digest()


def test_length_sorted_chunks_give_the_whole_batch_embeddings_and_gradients(pairs, new_model):
    """A side of 20 real passages runs in chunks of similar length, each padded to its own longest
    text: the embeddings (in input order) and the gradients are those of one padded batch."""
    from xlir_utils.training import step

    texts = pairs["passage"].drop_duplicates().head(20).tolist()
    lengths = [len(t) for t in texts]
    chunks = step.length_chunks(lengths, 8)
    assert [len(c) for c in chunks] == [8, 8, 4] and sorted(i for c in chunks for i in c) == list(range(20))
    assert all(lengths[a] >= lengths[b] for c in chunks for a, b in zip(c, c[1:]))
    assert step.length_chunks(lengths, 0) == [list(range(20))]

    def run(rows):
        model = new_model(64)
        model.eval()  # no dropout: the two passes must compute the same function
        with step.chunked(rows):
            out = embed(model, texts, ["de"] * 20, "passage")
        (out * torch.linspace(-1, 1, out.shape[1])).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return out.detach(), grads

    chunked, chunked_grads = run(8)
    whole, whole_grads = run(0)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)
    assert step.CHUNK_ROWS == config.TrainConfig(steps=1, batch_size=1).chunk_rows  # restored after the block
    assert chunked_grads.keys() == whole_grads.keys() and chunked_grads
    for name in whole_grads:
        torch.testing.assert_close(chunked_grads[name], whole_grads[name], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("rows, sizes", [(0, [8]), (3, [3, 3, 2])])
def test_a_run_embeds_each_side_in_chunks_of_its_recipe(pairs, tmp_path, new_model, rows, sizes):
    """The loop applies the recipe's ``chunk_rows``: what the encoder receives, step by step."""
    cfg = _tiny(1, chunk_rows=rows)
    model = new_model()
    seen, forward = [], model[0].forward

    def recording(features, *args, **kwargs):
        seen.append(tuple(features["input_ids"].shape))
        return forward(features, *args, **kwargs)

    model[0].forward = recording
    train_run(model, pairs, make_spec("t", ENCODER, "hybrid", cfg, 13, pairs), tmp_path / "run",
              save_fn=lambda m, f: None, show_progress=False)
    assert [n for n, _ in seen] == sizes * 2  # queries, then passages
    widths = [w for _, w in seen]
    assert all(a >= b for a, b in zip(widths[: len(sizes)], widths[1: len(sizes)]))  # longest chunk first
    assert make_spec("t", ENCODER, "hybrid", cfg, 13, pairs).digest() != \
        make_spec("t", ENCODER, "hybrid", _tiny(1, chunk_rows=5), 13, pairs).digest()  # part of the recipe


def test_a_trained_model_is_freed_when_its_run_returns(pairs, tmp_path, monkeypatch, new_model):
    """A SentenceTransformer sits in a reference cycle (its model card refers back to it), so only
    the cyclic collector frees it: notebook 02's kernel grew by about 0.5 GB per run until
    train_full collected after each run. Automatic collection is off here, so the model is gone
    only if the run collects it."""
    import gc
    import weakref

    from xlir_utils import training

    cfg = config.load("smoke").replace(train={"steps": 2, "batch_size": 8, "max_seq_length": 32})
    loaded = []

    def load(*args, **kwargs):
        model = new_model()
        loaded.append(weakref.ref(model))
        return model

    monkeypatch.setattr(training.runs, "load_encoder", load)
    gc.collect()
    gc.disable()
    try:
        record = training.train_full(cfg, "hybrid", pairs, runs_root=tmp_path, show_progress=False)
        assert record["finished"] and len(loaded) == 1
        assert loaded[0]() is None, "the trained model outlived its run"
    finally:
        gc.enable()
