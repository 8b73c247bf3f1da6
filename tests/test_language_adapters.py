"""Language adapters (MAD-X style) for the bi-encoder: the MLM head on cached states, language
adapters above the frozen prefix, the variants, and the sanity checks that tell a collapse from a bug.

Tiny step counts, a few hand-written parallel sentences and NTREX-128 text. The adapter plumbing,
routing, saving and reuse do not depend on the encoder's weights: they run on a tiny random BERT
with the offline model's tokenizer (``tiny_encoder`` in conftest.py), whose module-scoped head,
language adapters (en, de) and trained variants the tests share. Only whether MLM learning works
(the head, an adapter's falling loss) needs the real offline encoder (``e5_head``).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from xlir_utils import config, paths
from xlir_utils import language_adapters as la
from xlir_utils.encoders import prefix
from xlir_utils.language_adapters import lang_training, plumbing, variants

pytestmark = pytest.mark.slow

TEXTS = {
    "en": ["The cat sleeps on the warm windowsill.", "Rain is expected in the north tomorrow.",
           "She bought three apples at the market.", "The museum opens at nine in the morning.",
           "Our train was delayed by twenty minutes.", "He plays the piano every evening.",
           "The river flows through the old town.", "Children are playing in the park.",
           "The library closes early on Sundays.", "My brother lives near the sea."],
    "de": ["Die Katze schläft auf der warmen Fensterbank.", "Morgen wird im Norden Regen erwartet.",
           "Sie kaufte drei Äpfel auf dem Markt.", "Das Museum öffnet um neun Uhr morgens.",
           "Unser Zug hatte zwanzig Minuten Verspätung.", "Er spielt jeden Abend Klavier.",
           "Der Fluss fließt durch die Altstadt.", "Kinder spielen im Park.",
           "Die Bibliothek schließt sonntags früh.", "Mein Bruder wohnt in der Nähe des Meeres."],
}
K = 6  # the frozen prefix of the smoke profile


def tiny_profile():
    cfg = config.load("smoke")
    return cfg.replace(
        seeds=(13,),
        adapters={"languages": ("de", "en"), "mlm_steps": 12, "mlm_batch_size": 4, "mlm_max_seq_length": 24,
                  "mlm_lr": 3e-3, "task_lr": 1e-3, "heldout_fraction": 0.2, "head_lr": 2e-3, "head_batch": 64,
                  "head_max_epochs": 15, "head_patience": 2, "head_maskings": 2, "head_study_texts": None,
                  "lr_grid": (1e-3, 3e-3)},
        train={"batch_size": 4, "max_seq_length": 32, "checkpoint_every": 1, "steps": 2},
    )


def snapshot(model, head=None) -> dict[str, torch.Tensor]:
    state = {f"model.{n}": p.detach().clone() for n, p in model.named_parameters()}
    if head is not None:
        state.update({f"head.{n}": p.detach().clone() for n, p in head.named_parameters()})
    return state


def changed(before: dict, model, head=None) -> set[str]:
    after = snapshot(model, head)
    return {n for n in before if n in after and not torch.equal(before[n], after[n])}


def trainable_names(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def toy_pairs() -> pd.DataFrame:
    rows = [(f"q{i}", ql, TEXTS[ql][i], pl, TEXTS[pl][(i + 1) % 10], "toy")
            for i in range(10) for ql in ("en", "de") for pl in ("en", "de")]
    return pd.DataFrame(rows, columns=["question_id", "query_lang", "query", "passage_lang", "passage", "dataset"])


@pytest.fixture(scope="module")
def prof(tiny_encoder_dir):
    return tiny_profile().replace(encoder=str(tiny_encoder_dir()))


@pytest.fixture(scope="module")
def corpus(shared_data):
    """150 NTREX-128 sentences per language: enough held-out text for an MLM loss to mean something."""
    from xlir_utils.data import monolingual_text

    return {lang: monolingual_text(lang)[:150] for lang in ("de", "en")}


@pytest.fixture(scope="module")
def e5_head(prof, corpus, tmp_path_factory):
    """``e5-small-offline`` with the shared MLM head trained on its cached states. Whether a head
    learns to predict masked tokens, and whether an adapter then lowers that loss within a few
    steps, depends on states that carry meaning: a random encoder's hardly do."""
    from xlir_utils.encoders import load_encoder

    model = load_encoder("e5-small-offline")
    root = tmp_path_factory.mktemp("e5-head")
    _, held = la.split_heldout(corpus, prof.adapters.heldout_fraction)
    head, head_log, head_held = la.train_mlm_head(model, corpus, prof, root / la.HEAD_DIR, show_progress=False)
    return {"model": model, "head": head, "head_log": head_log, "held": head_held, "root": root, "held_text": held}


@pytest.fixture(scope="module")
def trained(prof, corpus, tmp_path_factory, tiny_encoder):
    """The tiny encoder with the shared head (cached states) and two language adapters, saved to disk."""
    model = tiny_encoder()
    root = tmp_path_factory.mktemp("lang")
    train, held = la.split_heldout(corpus, prof.adapters.heldout_fraction)
    head, head_log, head_held = la.train_mlm_head(model, corpus, prof, root / la.HEAD_DIR, show_progress=False)
    changes, records, original = {}, {}, lang_training.mlm_training_loop
    for lang in prof.adapters.languages:
        before = {}

        def spy(*args, **kwargs):  # weights right before the MLM steps (the adapter exists by then)
            before.update(snapshot(model, head))
            return original(*args, **kwargs)

        lang_training.mlm_training_loop = spy
        try:
            _, records[lang] = la.train_language_adapter(model, head, lang, train[lang], held[lang], prof, root / lang,
                                                         show_progress=False)
        finally:
            lang_training.mlm_training_loop = original
        changes[lang] = changed(before, model, head)
    return {"model": model, "head": head, "head_log": head_log, "root": root, "changes": changes,
            "heldout": records, "held_text": held}


@pytest.fixture(scope="module")
def project(prof, trained, tmp_path_factory):
    """A project folder whose language adapters are the trained ones (variants load them from there)."""
    import shutil

    root = tmp_path_factory.mktemp("proj")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XLIR_ROOT", str(root))
        target = la.language_adapters_dir(prof.name)
        shutil.copytree(trained["root"], target)
        yield root


@pytest.fixture(scope="module")
def runs(prof, project, tiny_encoder):
    """Every variant trained for 2 hybrid steps on parallel en/de pairs."""
    pairs = toy_pairs()
    captured, original = {}, variants.prepare_variant
    out = {}
    for variant in la.VARIANTS:
        def spy(*args, **kwargs):  # trainable names and weights right after set-up
            routing = original(*args, **kwargs)
            captured[variant] = {"trainable": trainable_names(args[0]), "before": snapshot(args[0])}
            return routing

        variants.prepare_variant = spy
        model = tiny_encoder()
        try:
            record = la.train_variant(prof, variant, pairs, model=model, show_progress=False)
        finally:
            variants.prepare_variant = original
        out[variant] = {"model": model, "record": record, **captured[variant],
                        "run_dir": project / "runs" / prof.name / la.variant_run_name(variant, 13)}
    return out


# ------------------------------------------------------------------ the MLM head and the language adapters
def test_the_head_learns_on_cached_states(e5_head, prof):
    """On held-out text the trained head predicts masked tokens far better than a fresh one."""
    from xlir_utils.language_adapters import mlm

    model, head = e5_head["model"], e5_head["head"]
    fresh = la.new_mlm_head(model, head.vocab, layer=head.layer, context_layers=len(head.context))
    held = [t for texts in e5_head["held_text"].values() for t in texts]
    with plumbing.no_adapters(la.enable_adapters(model)):
        trained_loss, _ = mlm.heldout_mlm(model, head, held, prof.adapters.mlm_max_seq_length, seed=3, invertible=False)
        fresh_loss, _ = mlm.heldout_mlm(model, fresh, held, prof.adapters.mlm_max_seq_length, seed=3, invertible=False)
    assert trained_loss < fresh_loss - 0.5
    record = json.loads((e5_head["root"] / la.HEAD_DIR / "run.json").read_text())
    log = e5_head["head_log"]
    final = pd.read_csv(e5_head["root"] / la.HEAD_DIR / "heldout_chosen.csv")
    assert record["heldout_loss"] == pytest.approx(final.head_loss.mean())
    assert log[log.candidate == record["chosen"]].heldout_loss.min() < 10
    # the screen: every candidate trained the screen's epochs, only the chosen one went on, and the
    # kept head is never worse on held-out text than the chosen candidate was at the screen
    screen = prof.adapters.head_screen_epochs
    assert record["screen_epochs"] == screen == 1
    epochs = log.groupby("candidate").epoch.max()
    assert (epochs.drop(record["chosen"]) == screen).all() and epochs[record["chosen"]] > screen
    assert log[log.candidate == record["chosen"]].epoch.tolist() == list(range(1, epochs[record["chosen"]] + 1))
    screened = e5_head["held"].query("candidate == @record['chosen']").head_loss.mean()
    assert record["heldout_loss"] <= screened
    assert record["vocab"] < 10_000  # the softmax ranges over the ids of this text only
    reloaded = lang_training._load_head(e5_head["model"], e5_head["root"] / la.HEAD_DIR)
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), e5_head["head"].state_dict().values()))


def test_mlm_phase_changes_only_that_language_adapter_and_lowers_its_loss(trained):
    for lang, names in trained["changes"].items():
        assert names, f"MLM training of {lang} changed nothing"
        name = la.lang_adapter_name(lang)
        other = {n for n in names if f".{name}." not in n and not n.endswith(f".{name}")}
        assert not other, f"MLM training of {lang} changed other parameters: {sorted(other)[:5]}"
        assert any("invertible_adapters" in n for n in names), "the invertible adapter was not trained"
        assert not any(n.startswith("head.") for n in names), "the shared MLM head must stay frozen"
        held = trained["heldout"][lang]
        assert np.isfinite([held["loss_before"], held["loss_after"], held["loss_after_without_invertible"]]).all()
        assert held["loss_after"] != held["loss_before"] != held["loss_after_without_invertible"]


def test_the_adapter_without_its_invertible_part_is_measured_in_place(trained):
    """The held-out loss of an adapter as retrieval uses it (invertible part dropped) is the loss
    on a copy of the model with that part deleted; afterwards the model is as it was."""
    import copy

    model, head, held = trained["model"], trained["head"], trained["held_text"]
    auto = la.enable_adapters(model)
    lang = next(iter(trained["changes"]))
    name = la.lang_adapter_name(lang)
    before = list(model.state_dict().items())
    auto.set_active_adapters(name)
    try:
        probe = copy.deepcopy(model)
        la.drop_invertible(la.enable_adapters(probe), name)
        on_copy = la.heldout_mlm(probe, head, held[lang], 24, 5, invertible=False)
        with la.without_invertible(auto, name) as had:
            assert had and name not in auto.invertible_adapters
            in_place = la.heldout_mlm(model, head, held[lang], 24, 5, invertible=False)
        with_it = la.heldout_mlm(model, head, held[lang], 24, 5, invertible=False)
    finally:
        auto.active_adapters = None
    assert in_place == on_copy and with_it != in_place
    after = list(model.state_dict().items())
    assert [k for k, _ in after] == [k for k, _ in before]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(after, before))


def test_mlm_loss_of_a_language_adapter_falls(e5_head):
    """A fresh adapter on a fixed batch with fixed masks: its MLM loss must fall clearly."""
    model, head = e5_head["model"], e5_head["head"]
    auto = la.enable_adapters(model)
    name = "la_probe"
    torch.manual_seed(0)
    auto.add_adapter(name, config=plumbing.lang_adapter_config(2, range(K)))
    auto.train_adapter(name)
    opt = torch.optim.AdamW([p for p in auto.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    try:
        model.eval()
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
    assert losses[-1] < losses[0] - 0.5, losses


def test_adapters_live_above_the_frozen_prefix(trained, prof):
    model = trained["model"]
    auto = la.enable_adapters(model)
    lower = [n for n, _ in auto.named_parameters() if "la_" in n and any(f"layer.{i}." in n for i in range(K))]
    assert not lower, lower[:3]
    import copy

    stripped = copy.deepcopy(model)
    auto2 = la.enable_adapters(stripped)
    assert not prefix.shareable(stripped, K)  # an invertible adapter changes the embeddings
    for lang in ("de", "en"):
        assert la.drop_invertible(auto2, la.lang_adapter_name(lang))
    assert prefix.shareable(stripped, K)
    from xlir_utils.encoders import load_encoder

    assert prefix.prefix_fingerprint(stripped, K) == prefix.prefix_fingerprint(load_encoder(prof.encoder), K)


# ------------------------------------------------------------------ the variants
def test_each_variant_trains_what_it_says(runs):
    for variant, r in runs.items():
        assert r["record"]["finished"], variant
        trainable, moved = r["trainable"], changed(r["before"], r["model"])
        assert trainable and moved and moved <= {f"model.{n}" for n in trainable}, variant
        la_moved = {n for n in moved if ".la_" in n}
        assert ("task" in "".join(moved)), variant
        assert bool(la_moved) == (variant == "joint-per-side"), (variant, sorted(la_moved)[:3])
        assert not any("invertible" in n for n in trainable), "invertible adapters are dropped for retrieval"


def test_the_control_is_as_large_as_language_plus_task_adapter(runs):
    per_side = la.enable_adapters(runs["mlm-per-side"]["model"])
    control = la.enable_adapters(runs["shared-control"]["model"])
    per_input = la.adapter_parameters(per_side, "la_de") + la.adapter_parameters(per_side, la.TASK)
    assert la.adapter_parameters(control, la.TASK) == pytest.approx(per_input, rel=0.02)


def test_routing_sanity_checks(runs, prof):
    """English for every language = the English variant's routing; no language adapter = task-only;
    every row through its own language's adapter, in any mix."""
    model, routing, _ = la.load_variant(runs["mlm-per-side"]["run_dir"])
    texts = TEXTS["en"][:3] + TEXTS["de"][:3]
    langs = ["en", "de", "en", "de", "de", "en"]
    kw = dict(cache=False, show_progress=False, precision="fp32")
    nobody_seen = dataclasses.replace(routing, seen=())  # every language counts as never seen
    all_en = la.encode_routed(model, texts, langs, "passage", nobody_seen.with_unseen("en"), **kw)
    english = la.encode_routed(model, texts, langs, "passage", la.make_routing("english"), **kw)
    np.testing.assert_array_equal(all_en, english)
    none = la.encode_routed(model, texts, langs, "passage", nobody_seen.with_unseen("none"), **kw)
    task_only = la.encode_routed(model, texts, langs, "passage", la.make_routing("task-only"), **kw)
    np.testing.assert_array_equal(none, task_only)
    mixed = la.encode_routed(model, texts, langs, "passage", routing, **kw)
    for lang in ("en", "de"):
        rows = [i for i, x in enumerate(langs) if x == lang]
        alone = la.encode_routed(model, [texts[i] for i in rows], [lang] * len(rows), "passage", routing, **kw)
        np.testing.assert_array_equal(mixed[rows], alone)
    assert np.abs(mixed[1] - english[1]).max() > 1e-4  # a German row: la_de is not la_en


def test_cached_embeddings_never_cross_routings(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("XLIR_CACHE_DIR", str(tmp_path))
    model, routing, _ = la.load_variant(runs["mlm-per-side"]["run_dir"])
    texts, langs = TEXTS["de"][:2], ["de", "de"]
    kw = dict(show_progress=False, precision="fp32")
    own = la.encode_routed(model, texts, langs, "query", routing, **kw)
    en = la.encode_routed(model, texts, langs, "query", dataclasses.replace(routing, seen=()).with_unseen("en"), **kw)
    assert np.abs(own - en).max() > 1e-4
    np.testing.assert_array_equal(own, la.encode_routed(model, texts, langs, "query", routing, **kw))


def test_training_on_the_cached_prefix_is_the_full_forward(runs):
    from xlir_utils.training import embed_with_grad
    from xlir_utils.training.frozen_prefix import PrefixCache

    model, routing, _ = la.load_variant(runs["task-only"]["run_dir"])
    model.max_seq_length = 32
    texts = TEXTS["en"][:4]
    cache = PrefixCache(model, K, {"query": texts}, max_seq_length=32, precision="fp32")
    from adapters import AdapterSetup

    with AdapterSetup(routing.setup("en")), torch.no_grad():
        cached = cache.embed(model, texts, "query")
        full = embed_with_grad(model, texts, ["en"] * 4, "query")
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)


def test_save_reload_is_bit_identical(runs):
    r = runs["joint-per-side"]
    manifest = json.loads((r["run_dir"] / "model" / la.MANIFEST).read_text())
    assert set(manifest["saved"]) == {"la_de", "la_en", "task"} and manifest["seed"] == 13
    reloaded, routing, _ = la.load_variant(r["run_dir"])
    model = r["model"]
    la.enable_adapters(model)
    texts = TEXTS["en"][:3] + TEXTS["de"][:3]
    langs = ["en"] * 3 + ["de"] * 3
    for kind in ("query", "passage"):
        a = la.encode_routed(model, texts, langs, kind, routing, cache=False, show_progress=False, precision="fp32")
        b = la.encode_routed(reloaded, texts, langs, kind, routing, cache=False, show_progress=False, precision="fp32")
        assert np.array_equal(a, b), f"reloaded {kind} embeddings differ (max {np.abs(a - b).max()})"


def test_variant_runs_are_found_by_seed_and_variant(runs, prof):
    every = la.variant_run_dirs(prof.name)
    assert [d.name for d in every] == [la.variant_run_name(v, 13) for v in la.VARIANTS]
    assert la.variant_run_dirs(prof.name, seed=13) == every and la.variant_run_dirs(prof.name, seed=14) == []
    assert la.variant_run_dirs(prof.name, variants=la.PER_SIDE) == [runs[v]["run_dir"] for v in la.VARIANTS
                                                                     if v in la.PER_SIDE]


def test_finished_variant_is_reused_and_mlm_variants_need_trained_adapters(prof, runs, monkeypatch):
    monkeypatch.setattr(variants, "load_encoder", lambda *a, **k: pytest.fail("retrained"))  # train_variant's
    record = la.train_variant(prof, "task-only", toy_pairs(), show_progress=False)
    assert record["digest"] == runs["task-only"]["record"]["digest"]
    monkeypatch.setattr(variants, "head_record", lambda p: None)
    with pytest.raises(RuntimeError, match="needs MLM language adapters, and none were trained"):
        la.train_variant(prof, "english", toy_pairs(), show_progress=False)


def test_hidden_shift_is_zero_without_and_positive_with_an_adapter(trained):
    shift = la.hidden_shift(trained["model"], {lang: TEXTS[lang][:3] for lang in ("en", "de")})
    assert set(shift.lang) == {"en", "de"} and (shift.relative_shift > 0).all()


def test_hub_adapters_fail_clearly_for_other_encoders(trained):
    with pytest.raises(RuntimeError, match="xlm-roberta-base"):
        la.load_hub_language_adapters(trained["model"], ["en"])


def test_no_tatoeba_sentence_is_mlm_text(shared_data, tmp_path, monkeypatch):
    from xlir_utils.data import tatoeba_texts
    from xlir_utils.data.pairs import normalise_text

    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))  # processed tables go to a throw-away project
    cfg = config.load("smoke")
    corpus = la.mlm_corpus(cfg.replace(adapters={"max_texts_per_language": None}))
    tatoeba = {normalise_text(t) for t in tatoeba_texts()}
    assert not {normalise_text(t) for texts in corpus.values() for t in texts} & tatoeba
    assert plumbing.FORMAT_VERSION >= 3


# ------------------------------------------------------------------ the head study and the adapter matrix
def test_every_candidate_head_is_scored_on_the_same_held_out_tokens_and_the_best_is_kept(e5_head, prof):
    study = pd.read_csv(e5_head["root"] / la.HEAD_DIR / "study.csv")
    names = [c.name for c in la.head_candidates(prof, 12)]
    assert study.name.tolist() == names and study.chosen.sum() == 1
    assert study.loc[study.chosen, "heldout_loss"].iloc[0] == study.heldout_loss.min()
    assert study.loc[study.chosen, "name"].iloc[0] == json.loads((e5_head["root"] / la.HEAD_DIR / "run.json").read_text())["chosen"]
    held = e5_head["held"]
    tokens = held.pivot(index="candidate", columns="lang", values="masked_tokens")
    assert (tokens.nunique() == 1).all(), "candidates were scored on different masked tokens"
    # the intermediate candidate reads the layer halfway between the frozen prefix and the top
    assert la.head_candidates(prof, 12)[2].layer == 9 and la.head_candidates(prof, 8)[2].layer == 7
    # a candidate with more text trains on more positions than the one without
    assert study.set_index("name").train_positions[names[1]] > study.set_index("name").train_positions[names[0]]


def test_a_head_on_an_intermediate_layer_reads_that_layers_states(e5_head):
    """The encoder is cut after layer k for the head (cheaper), which must give hidden_states[k]."""
    from xlir_utils.language_adapters import mlm

    model = e5_head["model"]
    head = la.new_mlm_head(model, e5_head["head"].vocab, layer=9)
    tok = model.tokenizer(TEXTS["de"][:3], padding=True, return_tensors="pt")
    labels = tok["input_ids"].clone()
    labels[:, 0] = -100
    with torch.inference_mode(), plumbing.no_adapters(la.enable_adapters(model)):
        (states,), _ = mlm._head_inputs(model, head, tok["input_ids"], tok["attention_mask"], labels, invertible=False)
        full = model[0].auto_model(**tok, output_hidden_states=True).hidden_states[9]
    torch.testing.assert_close(states, full[labels != -100], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="0 or 1"):
        la.new_mlm_head(model, e5_head["head"].vocab, context_layers=2)


def test_language_adapters_live_where_their_mlm_loss_reaches(prof, corpus, tmp_path):
    """Against a head on layer k, a language adapter has bottlenecks in layers [frozen, k) only."""
    from xlir_utils.encoders import load_encoder
    from xlir_utils.language_adapters import mlm

    model = load_encoder(prof.encoder)
    train, held = la.split_heldout(corpus, prof.adapters.heldout_fraction)
    head = la.new_mlm_head(model, mlm.corpus_vocab(model.tokenizer, train["de"], 24), layer=7)
    la.train_language_adapter(model, head, "de", train["de"][:8], held["de"][:4], prof.replace(adapters={"mlm_steps": 1}),
                              show_progress=False)
    layers = {int(n.split("layer.")[1].split(".")[0]) for n, _ in la.enable_adapters(model).named_parameters()
              if "la_de" in n and "layer." in n}
    assert layers == {6}, layers  # the tiny encoder: frozen 0-5, head on layer 7 -> only layer 6


def test_the_adapter_matrix_compares_each_adapter_with_the_head_alone_on_the_same_tokens(trained, prof):
    held = {lang: trained["held_text"][lang][:12] for lang in ("de", "en")}
    matrix = la.cross_language_mlm(trained["model"], trained["head"], held, ["de", "en"],
                                   prof.adapters.mlm_max_seq_length, seed=5, bootstrap=200)
    assert len(matrix) == 4 and set(zip(matrix.adapter, matrix.lang)) == {(a, b) for a in ("de", "en") for b in ("de", "en")}
    np.testing.assert_allclose(matrix.loss - matrix.head_loss, matrix.delta, atol=1e-9)
    assert (matrix.groupby("lang").tokens.nunique() == 1).all()
    assert (matrix.ci_low <= matrix.delta).all() and (matrix.delta <= matrix.ci_high).all()
    # the head-alone loss is the trained adapter record's "before" (same text, same head, no adapter)
    assert (matrix.groupby("lang").head_loss.nunique() == 1).all()


def test_an_adapter_counts_as_learned_only_when_it_helps_its_own_language_most():
    rows = [("de", "de", -0.30, -0.40, -0.20), ("de", "en", -0.05, -0.10, 0.00),
            ("en", "en", -0.02, -0.05, 0.01), ("en", "de", 0.00, -0.01, 0.01),
            ("th", "th", -0.10, -0.15, -0.05), ("th", "de", -0.20, -0.30, -0.10)]
    matrix = pd.DataFrame(rows, columns=["adapter", "lang", "delta", "ci_low", "ci_high"])
    learned = la.learned_adapters(matrix).set_index("adapter").learned
    assert learned.to_dict() == {"de": True, "en": False, "th": False}  # en: interval crosses 0; th: helps de more


# ------------------------------------------------------------------ no routing through an untrained adapter
def _manifest(variant: str, mlm_langs=(), train=("de", "en"), own=("de", "en", "th")) -> dict:
    per_side = variant in la.PER_SIDE
    return {"variant": variant, "task": la.TASK, "own": {x: la.lang_adapter_name(x) for x in own} if per_side else {},
            "default": la.lang_adapter_name("en") if variant == "english" else None, "train_languages": list(train),
            "digest": "d", "lang_adapter_digests": {x: f"mlm-{x}" for x in mlm_langs}, "seed": 13,
            "base_encoder": "e5-small-offline", "freeze_layers": K}


def test_a_routing_through_an_adapter_no_step_updated_is_named():
    scratch = _manifest("joint-per-side")  # th never occurs in training: its random adapter was never updated
    assert la.untrained_routes(scratch) == ["th"]
    assert la.untrained_routes(scratch, "none") == [] and la.untrained_routes(scratch, "en") == []
    assert la.untrained_routes(_manifest("joint-per-side", mlm_langs=("de", "en", "th"))) == []
    assert la.untrained_routes(_manifest("mlm-per-side", mlm_langs=("de", "en"))) == ["th"]
    assert la.untrained_routes(_manifest("english")) == ["en"]  # every language through an untrained la_en
    assert la.untrained_routes(_manifest("english", mlm_langs=("en",))) == []
    assert la.untrained_routes(_manifest("task-only")) == []


def test_evaluated_systems_never_route_through_an_untrained_adapter(tmp_path, monkeypatch, caplog):
    """Notebook 04's systems: a scratch joint run keeps only its unseen-en / unseen-none routings."""
    from xlir_utils.systems import discovery

    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))
    cfg = config.load("smoke")
    for variant, manifest in (("joint-per-side", _manifest("joint-per-side")),
                              ("mlm-per-side", _manifest("mlm-per-side", mlm_langs=("de", "en", "th")))):
        folder = paths.runs_dir(cfg.name) / la.variant_run_name(variant, 13) / "model"
        folder.mkdir(parents=True)
        (folder / la.MANIFEST).write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING):
        names = sorted(s.name for s in discovery.adapter_run_systems(cfg))
    assert names == ["adapters-joint-per-side-unseen-en", "adapters-joint-per-side-unseen-none",
                     "adapters-mlm-per-side", "adapters-mlm-per-side-unseen-en", "adapters-mlm-per-side-unseen-none"]
    assert "sends th through language adapters that no training step updated" in caplog.text


# ------------------------------------------------------------------ the study's text budget; the adapters' learning rate
def test_the_head_study_encodes_at_most_head_study_texts_per_language(prof, corpus, tiny_encoder, tmp_path, monkeypatch):
    seen = []
    original = lang_training.candidate_states

    def spy(model, candidates, vocab, texts, more, profile, purpose, **kwargs):
        seen.append((purpose, {x: len(v) for x, v in texts.items()}, {x: len(v) for x, v in more.items()}))
        return original(model, candidates, vocab, texts, more, profile, purpose, **kwargs)

    monkeypatch.setattr(lang_training, "candidate_states", spy)
    capped = prof.replace(adapters={"head_study_texts": 7, "head_max_epochs": 1})
    questions = {"de": TEXTS["de"], "en": TEXTS["en"]}
    la.train_mlm_head(tiny_encoder(), corpus, capped, tmp_path / "head", questions=questions, show_progress=False)
    (_, train, more), (_, held, _) = seen
    _, held_text = la.split_heldout(corpus, prof.adapters.heldout_fraction)
    assert train == {"de": 7, "en": 7} and more == {"de": 7, "en": 7}
    assert held == {x: len(v) for x, v in held_text.items()}  # every held-out text is scored
    assert json.loads((tmp_path / "head" / "run.json").read_text())["recipe"]["study_texts"] == 7


def test_the_adapter_learning_rate_is_chosen_on_dev_and_used(prof, project, runs, monkeypatch, tmp_path):
    from xlir_utils.data.processed import read_processed
    from xlir_utils.language_adapters import learning_rate as grid_module

    def dev_de_en(profile, name):
        # The toy runs have adapters for de and en only, and the smoke dev set has one question
        # in en and none in de, so an XQuAD-R article in de and en stands in for it here.
        assert name == "mlqa-r-dev"
        return read_processed("xquad-r", profile.name, languages=("de", "en"), articles=1)

    monkeypatch.setattr(grid_module, "retrieval_set", dev_de_en)
    pairs = toy_pairs()
    grid = la.lr_grid(prof, pairs, languages=("de", "en"), show_progress=False)
    assert sorted(zip(grid.variant, grid.lr)) == sorted((v, lr) for v in la.GRID_VARIANTS for lr in (1e-3, 3e-3))
    assert np.isfinite(grid[["dev_mono", "dev_cross", "dev_multi", "S"]].to_numpy()).all()
    np.testing.assert_allclose(grid.S, grid[["dev_mono", "dev_cross", "dev_multi"]].mean(axis=1))
    for row in grid.itertuples():  # each run trained at its row's rate, apart from notebook 04's runs
        run_dir = la.grid_run_dir(prof.name, row.variant, row.lr, 13)
        assert json.loads((run_dir / "run.json").read_text())["spec"]["train"]["lr"] == row.lr
    assert not any(d.parent.name == "adapter-lr-grid" for d in la.variant_run_dirs(prof.name))
    rates = la.chosen_rates(grid)
    for variant, field in (("task-only", "task_lr"), ("joint-per-side", "joint_lr")):
        rows = grid[grid.variant == variant]
        assert rows.set_index("lr").S[rates[field]] == rows.S.max()
    chosen = prof.replace(adapters=rates)
    assert la.variant_lr(chosen, "joint-per-side") == rates["joint_lr"]
    assert la.variant_lr(chosen, "mlm-per-side") == la.variant_lr(chosen, "task-only") == rates["task_lr"]
    assert la.chosen_rates(grid.iloc[:0]) == {}

    def no_loading(*args, **kwargs):
        raise AssertionError("a scored run was loaded again")

    monkeypatch.setattr(grid_module, "load_variant", no_loading)  # a rerun reuses runs and scores
    pd.testing.assert_frame_equal(la.lr_grid(prof, pairs, languages=("de", "en"), show_progress=False)
                                  .drop(columns="train_minutes"), grid.drop(columns="train_minutes"))

    # the variant's run at the chosen rate and the grid's seed is the grid's run, copied, not trained
    from xlir_utils.language_adapters import variants as variants_module

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(variants_module, "train_run", no_training)
    twin = la.grid_run_dir(prof.name, "task-only", rates["task_lr"], 13)
    kw = dict(seed=13, languages=("de", "en"), show_progress=False)
    record = la.train_variant(chosen, "task-only", pairs, run_dir=tmp_path / "adopted", **kw)
    assert record == json.loads((twin / "run.json").read_text())
    for f in (twin / "model").rglob("*"):
        if f.is_file():
            assert (tmp_path / "adopted" / "model" / f.relative_to(twin / "model")).read_bytes() == f.read_bytes()
    untried = prof.replace(adapters={"task_lr": 5e-3})  # a rate the grid did not try is trained
    with pytest.raises(AssertionError, match="trained again"):
        la.train_variant(untried, "task-only", pairs, run_dir=tmp_path / "untried", **kw)
    other_recipe = chosen.replace(train={"chunk_rows": 3})  # the grid's rate, another recipe: trained
    with pytest.raises(AssertionError, match="trained again"):
        la.train_variant(other_recipe, "task-only", pairs, run_dir=tmp_path / "other", **kw)
    damaged = tmp_path / "damaged-grid-run"  # a damaged grid run is not copied but trained again
    shutil.copytree(twin, damaged)
    weights = max((f for f in (damaged / "model").rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)
    weights.write_bytes(weights.read_bytes()[:100])
    monkeypatch.setattr(variants_module, "grid_run_dir", lambda *args: damaged)
    with pytest.raises(AssertionError, match="trained again"):
        la.train_variant(chosen, "task-only", pairs, run_dir=tmp_path / "from-damaged", **kw)


def test_without_a_screen_every_candidate_trains_the_full_budget(prof, corpus, tiny_encoder, tmp_path):
    full = prof.replace(adapters={"head_screen_epochs": None, "head_max_epochs": 2, "head_patience": 5,
                                  "head_study_texts": 20})
    la.train_mlm_head(tiny_encoder(), corpus, full, tmp_path / "head", show_progress=False)
    record = json.loads((tmp_path / "head" / "run.json").read_text())
    log = pd.read_csv(tmp_path / "head" / "head_log.csv")
    study = pd.read_csv(tmp_path / "head" / "study.csv")
    assert record["screen_epochs"] is None and "screen_epochs" not in record["recipe"]
    assert (log.groupby("candidate").epoch.max() == 2).all()
    assert record["heldout_loss"] == pytest.approx(study.loc[study.chosen, "heldout_loss"].iloc[0])
    screened = prof.replace(adapters={"head_screen_epochs": 1, "head_max_epochs": 2})
    assert la.head_recipe(screened, corpus)["screen_epochs"] == 1  # a screen is part of the head's recipe
