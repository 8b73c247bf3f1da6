"""Language adapters (MAD-X style) for the bi-encoder: training phases, routing, save/reload.

Uses the real offline encoder (``e5-small-offline``) with tiny step counts and a few
hand-written parallel sentences (no data files needed). Module-scoped
fixtures share one model with two small language adapters (en, de) and one trained
per-side variant, so the whole file runs in a few minutes on 2 CPU cores.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from xlir_utils import config
from xlir_utils import language_adapters as la
from xlir_utils.language_adapters import lang_training, plumbing, variants

TEXTS = {
    "en": ["The cat sleeps on the warm windowsill.", "Rain is expected in the north tomorrow.",
           "She bought three apples at the market.", "The museum opens at nine in the morning.",
           "Our train was delayed by twenty minutes.", "He plays the piano every evening.",
           "The river flows through the old town.", "Children are playing in the park."],
    "de": ["Die Katze schläft auf der warmen Fensterbank.", "Morgen wird im Norden Regen erwartet.",
           "Sie kaufte drei Äpfel auf dem Markt.", "Das Museum öffnet um neun Uhr morgens.",
           "Unser Zug hatte zwanzig Minuten Verspätung.", "Er spielt jeden Abend Klavier.",
           "Der Fluss fließt durch die Altstadt.", "Kinder spielen im Park."],
}


def tiny_profile():
    cfg = config.load("smoke")
    return cfg.replace(
        adapters={"languages": ("de", "en"), "mlm_steps": 2, "mlm_batch_size": 4, "mlm_max_seq_length": 24,
                  "mlm_lr": 1e-3, "task_steps": 2, "task_lr": 1e-3},
        train={"batch_size": 4, "max_seq_length": 32, "checkpoint_every": 1},
    )


def snapshot(model, head=None) -> dict[str, torch.Tensor]:
    state = {f"model.{n}": p.detach().clone() for n, p in model.named_parameters()}
    if head is not None:
        state.update({f"head.{n}": p.detach().clone() for n, p in head.named_parameters()})
    return state


def changed(before: dict, model, head=None) -> set[str]:
    after = snapshot(model, head)
    assert set(after) >= set(before)
    return {n for n in before if not torch.equal(before[n], after[n])}


@pytest.fixture(scope="module")
def prof():
    return tiny_profile()


@pytest.fixture(scope="module")
def trained(prof, tmp_path_factory):
    """A model with a shared head and two language adapters (2 MLM steps each), saved to disk."""
    from xlir_utils.encoders import load_encoder

    model = load_encoder("e5-small-offline")
    root = tmp_path_factory.mktemp("lang")
    corpus = {lang: TEXTS[lang] for lang in prof.adapters.languages}
    head, _ = la.train_mlm_head(model, corpus, prof.replace(adapters={"mlm_head_steps": 8, "mlm_head_lr": 3e-3}),
                                root / la.HEAD_DIR, show_progress=False)
    changes, original = {}, lang_training.mlm_training_loop
    for lang in prof.adapters.languages:
        before = {}

        def spy(*args, **kwargs):  # weights right before the MLM steps (the adapter exists by then)
            before.update(snapshot(model, head))
            return original(*args, **kwargs)

        lang_training.mlm_training_loop = spy
        try:
            la.train_language_adapter(model, head, lang, TEXTS[lang], prof, root / lang, show_progress=False)
        finally:
            lang_training.mlm_training_loop = original
        changes[lang] = changed(before, model, head)
    return {"model": model, "head": head, "root": root, "changes": changes}


@pytest.fixture(scope="module")
def variant(prof, trained, tmp_path_factory):
    """A per-side variant trained for 2 hybrid steps on parallel en/de pairs (every language pair)."""
    from xlir_utils.encoders import load_encoder

    rows = [(f"q{i}", ql, TEXTS[ql][i], pl, TEXTS[pl][(i + 1) % 8], "toy")
            for i in range(8) for ql in ("en", "de") for pl in ("en", "de")]
    pairs = pd.DataFrame(rows, columns=["question_id", "query_lang", "query", "passage_lang", "passage", "dataset"])
    model = load_encoder("e5-small-offline")
    run_dir = tmp_path_factory.mktemp("runs") / la.run_name("per-side")
    captured = {}
    original = variants.prepare_variant

    def spy(*args, **kwargs):  # record trainable names and weights right after set-up
        routing = original(*args, **kwargs)
        captured["trainable"] = la.trainable_names(args[0])
        captured["before"] = snapshot(args[0])
        return routing

    variants.prepare_variant = spy
    try:
        record = la.train_variant(prof, "per-side", pairs, model=model, lang_dir=trained["root"], run_dir=run_dir,
                                  show_progress=False)
    finally:
        variants.prepare_variant = original
    return {"model": model, "run_dir": run_dir, "record": record, "pairs": pairs, **captured}


# ------------------------------------------------------------------ phases change only their parameters
def test_mlm_phase_changes_only_that_language_adapter(trained):
    for lang, names in trained["changes"].items():
        assert names, f"MLM training of {lang} changed nothing"
        other = {n for n in names if f".{la.lang_adapter_name(lang)}." not in n}
        assert not other, f"MLM training of {lang} changed other parameters: {sorted(other)[:5]}"
        assert any("invertible_adapters" in n for n in names), "the invertible adapter was not trained"
        assert not any(n.startswith("head.") for n in names), "the shared MLM head must stay frozen"


def test_task_phase_changes_only_task_adapter(variant):
    assert variant["record"]["finished"]
    trainable = variant["trainable"]
    assert trainable and all(f".{la.TASK}." in n for n in trainable), sorted(trainable)[:5]
    names = changed(variant["before"], variant["model"])
    assert names and all(f".{la.TASK}." in n for n in names), sorted(names)[:5]
    assert not any("la_" in n for n in names), "language adapters must stay frozen"


def test_mlm_loss_decreases(trained):
    """A fresh adapter on a fixed batch with fixed masks: its MLM loss must fall clearly."""
    model, head = trained["model"], trained["head"]
    auto = la.enable_adapters(model)
    name = "la_probe"
    torch.manual_seed(0)
    auto.add_adapter(name, config=plumbing.lang_adapter_config(2))
    auto.train_adapter(name)
    opt = torch.optim.AdamW([p for p in auto.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    try:
        for _ in range(6):
            loss = la.mlm_loss(model, head, TEXTS["de"], 24, torch.Generator().manual_seed(0))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        auto.delete_adapter(name)
        auto.active_adapters = None
        auto.requires_grad_(False)
        model.eval()
    assert losses[-1] < losses[0] - 0.5, losses


def test_head_loss_decreases(trained):
    """The trained shared head predicts masked tokens better than a fresh one (same texts, same masks)."""
    model, head = trained["model"], trained["head"]
    log = pd.read_csv(trained["root"] / la.HEAD_DIR / "mlm_log.csv")
    assert len(log) == 8 and np.isfinite(log.loss).all()
    fresh = la.new_mlm_head(model)
    auto = la.enable_adapters(model)
    auto.active_adapters = None
    texts = TEXTS["en"] + TEXTS["de"]
    with torch.no_grad():
        trained_loss = la.mlm_loss(model, head, texts, 24, torch.Generator().manual_seed(5)).item()
        fresh_loss = la.mlm_loss(model, fresh, texts, 24, torch.Generator().manual_seed(5)).item()
    assert trained_loss < fresh_loss - 0.5, (trained_loss, fresh_loss)


# ------------------------------------------------------------------ routing
def test_routing_uses_each_sides_language(trained):
    from adapters import AdapterSetup
    from adapters.composition import Stack

    from xlir_utils.training import embed_with_grad as embed

    model = trained["model"]
    auto = la.enable_adapters(model)
    auto.add_adapter(la.TASK, config=plumbing.task_adapter_config(16))
    try:
        model.eval()
        texts = TEXTS["en"][:3] + TEXTS["de"][:3]
        langs = ["en", "de", "en", "de", "de", "en"]
        routing = la.make_routing("per-side", ["de", "en"])
        with torch.no_grad():
            mixed = la.routed_embed_fn(routing)(model, texts, langs, "query")
            for lang in ("en", "de"):
                with AdapterSetup(Stack(la.lang_adapter_name(lang), la.TASK)):
                    ref = embed(model, texts, langs, "query")
                rows = [i for i, x in enumerate(langs) if x == lang]
                torch.testing.assert_close(mixed[rows], ref[rows], atol=1e-5, rtol=1e-4)
            with AdapterSetup(Stack("la_en", la.TASK)):
                under_en = embed(model, texts, langs, "query")
            with AdapterSetup(Stack("la_de", la.TASK)):
                under_de = embed(model, texts, langs, "query")
        diff = (under_en - under_de).abs().max().item()
        assert diff > 1e-3, f"the two language adapters give the same embeddings (max diff {diff})"
        # the numpy entry point gives the same rows, in input order
        want = torch.nn.functional.normalize(mixed, dim=-1).numpy()
        got = la.encode_routed(model, texts, langs, "query", routing, cache=False, show_progress=False,
                               precision="fp32")
        np.testing.assert_allclose(got, want, atol=1e-5)
        # the default precision ("auto": bf16 autocast where the CPU has bf16) routes the same way
        auto_prec = la.encode_routed(model, texts, langs, "query", routing, cache=False, show_progress=False)
        assert (auto_prec * want).sum(1).min() > 0.999
        other = la.encode_routed(model, texts, langs, "query", la.make_routing("english"), cache=False,
                                 show_progress=False)
        assert np.abs(other[1] - auto_prec[1]).max() > 1e-3  # a de row: la_de differs from la_en
    finally:
        auto.delete_adapter(la.TASK)
        auto.active_adapters = None


def test_routing_tables():
    per_side = la.make_routing("per-side", ["de", "el", "en"], train_languages=["de", "en"])
    assert per_side.setup_key("el") == "la_el+task"
    unseen_en = per_side.with_unseen("en")
    assert unseen_en.setup_key("el") == "la_en+task" and unseen_en.setup_key("de") == "la_de+task"
    assert unseen_en.key != per_side.key
    with pytest.raises(KeyError, match="no language adapter"):
        per_side.setup_key("th")
    assert la.make_routing("english").setup_key("zh") == "la_en+task"
    assert la.make_routing("task-only").setup_key("zh") == "task"
    with pytest.raises(ValueError, match="Unknown adapter variant"):
        la.make_routing("both")


# ------------------------------------------------------------------ save / reload
def test_save_reload_is_bit_identical(variant):
    model, run_dir = variant["model"], variant["run_dir"]
    manifest = json.loads((run_dir / "model" / la.MANIFEST).read_text())
    assert set(manifest["saved"]) == {"la_de", "la_en", "task"}
    texts = TEXTS["en"][:3] + TEXTS["de"][:3]
    langs = ["en"] * 3 + ["de"] * 3
    reloaded, routing = la.load_variant(run_dir)
    assert routing.variant == "per-side" and routing.tag == manifest["digest"]
    assert routing.seen == ("de", "en")
    for kind, precision in (("query", "fp32"), ("passage", "fp32"), ("query", "auto")):
        a = la.encode_routed(model, texts, langs, kind, routing, cache=False, show_progress=False,
                             precision=precision)
        b = la.encode_routed(reloaded, texts, langs, kind, routing, cache=False, show_progress=False,
                             precision=precision)
        assert np.array_equal(a, b), f"reloaded {kind} embeddings differ (max {np.abs(a - b).max()})"


def test_finished_variant_is_reused(prof, trained, variant):
    record = la.train_variant(prof, "per-side", variant["pairs"], lang_dir=trained["root"],
                              run_dir=variant["run_dir"], show_progress=False)
    assert record["digest"] == variant["record"]["digest"]


def test_hub_adapters_fail_clearly_for_other_encoders(trained):
    with pytest.raises(RuntimeError, match="xlm-roberta-base"):
        la.load_hub_language_adapters(trained["model"], ["en"])
