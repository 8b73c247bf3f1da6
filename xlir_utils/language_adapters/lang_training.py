"""The shared MLM head, then one MAD-X language adapter per language (notebook 03 §3).

In MAD-X the MLM head is part of the pre-trained model and stays frozen; e5-small has none, so a
**shared head is trained first** on cached states of the frozen encoder: the candidates of
:mod:`.head_study` are trained under one budget and the one with the lowest held-out loss is kept
(:func:`train_mlm_head`). Then each language adapter is trained against the frozen head
(:func:`train_language_adapter`), in the layers between the frozen prefix and the layer the head
reads: a language adapter is the only thing its MLM phase changes. Its held-out MLM loss is measured
before (the base model), after with its invertible adapter, and after without it. With
``use_hub_adapters`` (``paper``, ``xlm-roberta-base``) AdapterHub's pretrained adapters are
loaded instead. Everything is saved under ``runs/<profile>/language-adapters/`` and reused when
its recipe digest matches and its saved files match the SHA-256 its ``run.json`` records (a
damaged one is trained again); one process at a time trains each (``<folder>.lock``).
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import paths
from ..config import Profile
from ..data.registry import language_tuple
from ..encoders import load_encoder
from ..io_utils import (atomic_replace_dir, atomic_write_csv, atomic_write_json, atomic_write_torch, json_digest,
                        recover_dir)
from ..seeding import derived_seed
from ..training import finished_record, resolve_train_precision
from ..training.spec import FILES_KEY, record_files, run_lock
from ..training.step import machine_precision
from .corpus import first_texts, mlm_corpus, question_corpus, split_heldout
from .cross_mlm import cross_language_mlm
from .head_study import candidate_states, choose_head, head_candidates, summarise, train_candidate
from .mlm import CachedStates, MLMHead, corpus_vocab, head_from_state, heldout_mlm, mlm_training_loop, text_batches
from .plumbing import (FORMAT_VERSION, HUB_ADAPTERS, LANG_CONFIG, enable_adapters, lang_adapter_config,
                       lang_adapter_name, no_adapters, without_invertible)

HEAD_DIR = "_mlm_head"
CHOSEN_HELDOUT = "heldout_chosen.csv"  # the kept head's held-out loss per language (after the screen, if any)


def language_adapters_dir(profile: str) -> Path:
    """Where the language adapters of a profile live: ``runs/<profile>/language-adapters/`` (notebook 03 §6)."""
    return paths.runs_dir(profile) / "language-adapters"


def head_recipe(profile: Profile, corpus: dict[str, list[str]], questions: dict[str, list[str]] | None = None) -> dict:
    """What determines the shared MLM head and its study (their digest keys reuse)."""
    a = profile.adapters
    return {"format": FORMAT_VERSION, "encoder": profile.encoder, "lr": a.head_lr, "batch": a.head_batch,
            "max_epochs": a.head_max_epochs, "patience": a.head_patience, "max_len": a.mlm_max_seq_length,
            "max_positions": a.head_max_positions, "maskings": a.head_maskings, "max_seconds": a.head_max_seconds,
            "study_texts": a.head_study_texts,
            "frozen": profile.train.freeze_layers,
            "heldout": a.heldout_fraction, "seed": profile.seed, "precision": machine_precision(profile.train.precision),
            "texts": json_digest({k: v for k, v in sorted(corpus.items())}),
            "questions": json_digest({k: v for k, v in sorted((questions or {}).items())}),
            # a screen changes which epochs the candidates train (recorded only when set, so that
            # the heads of recipes without one keep their digests)
            **({"screen_epochs": screen} if (screen := screen_epochs(profile)) else {})}


def screen_epochs(profile: Profile) -> int | None:
    """The epochs every candidate head trains before only the best goes on (notebook 03 §3), or None
    when every candidate trains the full budget (no screen, or one as long as the budget)."""
    a = profile.adapters
    return a.head_screen_epochs if a.head_screen_epochs and a.head_screen_epochs < a.head_max_epochs else None


def adapter_layers(n_layers: int, frozen: int, head_layer: int) -> range:
    """The transformer layers a language adapter lives in: above the frozen prefix and below the
    layer its MLM head reads (-1: the last), where its MLM training reaches (notebook 03 §3)."""
    top = n_layers if head_layer < 0 else min(head_layer, n_layers)
    return range(frozen, top)


def adapter_recipe(profile: Profile, lang: str, texts: Sequence[str], head_digest: str) -> dict:
    """What determines a language adapter (its digest keys reuse)."""
    a = profile.adapters
    return {"format": FORMAT_VERSION, "encoder": profile.encoder, "lang": lang, "config": LANG_CONFIG,
            "reduction_factor": a.reduction_factor, "leave_out": profile.train.freeze_layers, "steps": a.mlm_steps,
            "lr": a.mlm_lr, "batch": a.mlm_batch_size, "max_len": a.mlm_max_seq_length, "seed": profile.seed,
            "precision": machine_precision(profile.train.precision), "texts": json_digest(list(texts)), "head": head_digest}


def _finished(folder: Path, digest: str, saved: str) -> bool:
    """Whether ``folder`` holds a finished result of this digest whose ``saved`` files are intact."""
    recover_dir(folder)  # a language adapter's folder is replaced as a unit
    return finished_record(folder, digest, (saved,)) is not None


def _load_head(model, folder: Path) -> MLMHead:
    head = head_from_state(model, torch.load(folder / "head.pt", weights_only=True))
    head.requires_grad_(False)
    return head


def train_mlm_head(model, corpus: dict[str, list[str]], profile: Profile, folder: Path, *,
                   questions: dict[str, list[str]] | None = None, show_progress: bool = True
                   ) -> tuple[MLMHead, pd.DataFrame, pd.DataFrame]:
    """Train (or reuse) the candidate MLM heads on cached states of the frozen encoder and keep the
    one with the lowest held-out loss (notebook 03 §3; :mod:`.head_study`).

    ``questions``: the extra text the "more text" candidates train on (:func:`.corpus.question_corpus`).
    The study encodes at most ``adapters.head_study_texts`` texts per language of each (the first of
    their seeded order); the held-out text is every language's held-out share.
    With ``adapters.head_screen_epochs`` every candidate trains that many epochs, is scored, and
    only the best continues to ``head_max_epochs`` (successive halving in one round); the study
    table compares the candidates at the screen's equal budget, the head record (``heldout_loss``)
    gives the kept head's final score.
    Returns (the chosen head, the per-epoch log of every candidate, held-out loss and accuracy per
    language and candidate). Saved as ``folder/head.pt`` (the chosen head) + ``head_log.csv`` +
    ``heldout.csv`` + ``study.csv`` (one row per candidate) + ``run.json``.
    """
    digest = json_digest(head_recipe(profile, corpus, questions))
    if _finished(folder, digest, "head.pt"):
        return _reuse_head(model, folder, digest)
    with run_lock(folder, "the MLM head"):
        if _finished(folder, digest, "head.pt"):  # another process trained it meanwhile
            return _reuse_head(model, folder, digest)
        return _train_head(model, corpus, questions or {}, profile, folder, show_progress=show_progress)


def _reuse_head(model, folder: Path, digest: str) -> tuple[MLMHead, pd.DataFrame, pd.DataFrame]:
    head = _load_head(model, folder)
    head.digest = digest
    return head, pd.read_csv(folder / "head_log.csv"), pd.read_csv(folder / "heldout.csv")


def _train_head(model, corpus: dict[str, list[str]], questions: dict[str, list[str]], profile: Profile,
                folder: Path, *, show_progress: bool) -> tuple[MLMHead, pd.DataFrame, pd.DataFrame]:
    """The body of :func:`train_mlm_head`, under the head folder's lock."""
    a = profile.adapters
    recipe = head_recipe(profile, corpus, questions)
    digest = json_digest(recipe)
    train_text, held_text = split_heldout(corpus, a.heldout_fraction)
    train_text, questions = first_texts(train_text, a.head_study_texts), first_texts(questions, a.head_study_texts)
    auto = enable_adapters(model)
    auto.requires_grad_(False)
    precision = resolve_train_precision(profile.train.precision, next(auto.parameters()).device)
    all_text = [t for texts in (*corpus.values(), *questions.values()) for t in texts]
    vocab = corpus_vocab(model.tokenizer, all_text, a.mlm_max_seq_length)  # one vocabulary for every candidate
    candidates = head_candidates(profile, auto.config.num_hidden_layers)
    heads, logs, held = {}, [], []
    with no_adapters(auto):
        started = time.perf_counter()
        train_states = candidate_states(model, candidates, vocab, train_text, questions, profile, "head",
                                        precision=precision)
        held_states = candidate_states(model, candidates, vocab, held_text, {}, profile, "heldout", once=True,
                                       precision=precision)
        states_seconds = time.perf_counter() - started
        screen = screen_epochs(profile)
        for candidate in tqdm(candidates, desc="MLM head candidates", disable=not show_progress):
            train = CachedStates.concat(list(train_states[candidate.name].values()))
            head, log, per_lang = train_candidate(model, candidate, vocab, train, held_states[candidate.name],
                                                  held_text, profile, precision=precision, show_progress=show_progress,
                                                  max_epochs=screen)
            heads[candidate.name] = head
            logs.append(log)
            held.append(per_lang)
        study = summarise(pd.concat(held, ignore_index=True), pd.concat(logs, ignore_index=True), candidates)
        chosen = choose_head(study)
        head = heads[chosen]
        final = held[[c.name for c in candidates].index(chosen)]
        if screen:  # the chosen candidate continues to the full budget; the others stop at the screen
            candidate = next(c for c in candidates if c.name == chosen)
            train = CachedStates.concat(list(train_states[chosen].values()))
            screened = {k: v.detach().clone() for k, v in head.state_dict().items()}
            done = int(logs[[c.name for c in candidates].index(chosen)].epoch.max())  # early stopping may cut the screen
            head, more, continued = train_candidate(model, candidate, vocab, train, held_states[chosen], held_text,
                                                    profile, precision=precision, show_progress=show_progress,
                                                    head=head, max_epochs=a.head_max_epochs - done,
                                                    first_epoch=done + 1)
            logs.append(more)
            if continued.head_loss.mean() < final.head_loss.mean():
                final = continued
            else:  # more epochs did not help on held-out text: the screened head is kept
                head.load_state_dict(screened)
        del train_states
    logs, held = pd.concat(logs, ignore_index=True), pd.concat(held, ignore_index=True)
    study["chosen"] = study.name == chosen
    best = {"layer": int(study[study.chosen].layer.iloc[0]),
            "context_layers": int(study[study.chosen].context_layers.iloc[0]),
            "heldout_loss": float(final.head_loss.mean()), "heldout_accuracy": float(final.head_accuracy.mean())}
    record = {"digest": digest, "recipe": recipe, "finished": True, "vocab": int(len(vocab)), "chosen": chosen,
              "states_seconds": states_seconds,
              "screen_epochs": screen, **best}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_torch(head.state_dict(), folder / "head.pt")
    atomic_write_csv(logs, folder / "head_log.csv")
    atomic_write_csv(held, folder / "heldout.csv")  # every candidate after the screen (or its full budget)
    atomic_write_csv(final.assign(candidate=chosen), folder / CHOSEN_HELDOUT)
    atomic_write_csv(study, folder / "study.csv")
    record[FILES_KEY] = record_files(folder, ("head.pt",))  # checked before the head is reused
    atomic_write_json(record, folder / "run.json")
    head.digest = digest
    return head, logs, held


def head_study_table(profile: Profile) -> pd.DataFrame | None:
    """The head candidates compared (one row each, ``chosen`` marks the kept one), or None before
    training (notebook 03 §3)."""
    path = language_adapters_dir(profile.name) / HEAD_DIR / "study.csv"
    return pd.read_csv(path) if path.is_file() else None


def head_record(profile: Profile) -> dict | None:
    """The trained head's record (the chosen candidate, its layer and held-out loss), or None
    before training (notebook 03 §3)."""
    path = language_adapters_dir(profile.name) / HEAD_DIR / "run.json"
    return json.loads(path.read_text()) if path.is_file() else None


def train_language_adapter(model, head: MLMHead, lang: str, texts: Sequence[str], heldout: Sequence[str],
                           profile: Profile, folder: Path | None = None, *, show_progress: bool = True
                           ) -> tuple[pd.DataFrame, dict]:
    """Add ``la_<lang>`` (``seq_bn_inv``, in the layers above the frozen prefix) to ``model`` and
    train it with MLM against the frozen head; only its weights change (notebook 03 §3).

    Returns (per-step log, held-out record: loss and accuracy before, after with the invertible
    adapter, after without it). With ``folder``, a finished adapter with the same recipe and intact
    files is reused (``load_adapter``), else it is trained and saved (``save_adapter`` +
    ``mlm_log.csv`` + ``run.json``), while no other process may write ``folder``
    (:class:`~xlir_utils.errors.BusyError`).
    """
    digest = json_digest(adapter_recipe(profile, lang, texts, head.digest))
    if folder is None:
        return _train_adapter(model, head, lang, texts, heldout, profile, None, show_progress=show_progress)
    if _finished(folder, digest, "adapter"):
        return _reuse_adapter(model, lang, folder)
    with run_lock(folder, f"the language adapter {lang}"):
        if _finished(folder, digest, "adapter"):  # another process trained it meanwhile
            return _reuse_adapter(model, lang, folder)
        return _train_adapter(model, head, lang, texts, heldout, profile, folder, show_progress=show_progress)


def _reuse_adapter(model, lang: str, folder: Path) -> tuple[pd.DataFrame, dict]:
    name = lang_adapter_name(lang)
    auto = enable_adapters(model)
    if name in auto.adapters_config:
        auto.delete_adapter(name)
    auto.load_adapter(str(folder / "adapter"), load_as=name)
    auto.adapter_to(name, next(auto.parameters()).device)
    record = json.loads((folder / "run.json").read_text())
    return pd.read_csv(folder / "mlm_log.csv"), record["heldout"]


def _train_adapter(model, head: MLMHead, lang: str, texts: Sequence[str], heldout: Sequence[str], profile: Profile,
                   folder: Path | None, *, show_progress: bool) -> tuple[pd.DataFrame, dict]:
    """The body of :func:`train_language_adapter` (under the folder's lock when it saves)."""
    a = profile.adapters
    name = lang_adapter_name(lang)
    auto = enable_adapters(model)
    device = next(auto.parameters()).device
    recipe = adapter_recipe(profile, lang, texts, head.digest)
    digest = json_digest(recipe)
    precision = resolve_train_precision(profile.train.precision, device)
    held_seed = derived_seed(profile.seed, "heldout-eval", lang)
    with no_adapters(auto):
        before = heldout_mlm(model, head, heldout, a.mlm_max_seq_length, held_seed, invertible=False)
    if name in auto.adapters_config:
        auto.delete_adapter(name)
    torch.manual_seed(derived_seed(profile.seed, "adapter-init", lang))
    n_layers = auto.config.num_hidden_layers
    layers = adapter_layers(n_layers, profile.train.freeze_layers, head.layer)
    auto.add_adapter(name, config=lang_adapter_config(a.reduction_factor, [i for i in range(n_layers) if i not in layers]))
    auto.adapter_to(name, device)
    auto.train_adapter(name)  # freezes everything else; activates `name`
    head.requires_grad_(False)
    params = [p for p in auto.parameters() if p.requires_grad]
    batches = text_batches(list(texts), a.mlm_batch_size, a.mlm_steps,
                           derived_seed(profile.seed, "adapter-batches", lang))
    log = mlm_training_loop(model, head, params, batches, a.mlm_lr, a.mlm_max_seq_length,
                            derived_seed(profile.seed, "adapter-masks", lang), f"MLM {lang}", show_progress, precision)
    log["lang"] = lang
    auto.requires_grad_(False)
    with_inv = heldout_mlm(model, head, heldout, a.mlm_max_seq_length, held_seed, invertible=True)
    with without_invertible(auto, name):  # the same adapter as retrieval uses it
        without_inv = heldout_mlm(model, head, heldout, a.mlm_max_seq_length, held_seed, invertible=False)
    auto.active_adapters = None
    model.eval()
    held = {"lang": lang, "heldout_texts": len(heldout), "loss_before": before[0], "accuracy_before": before[1],
            "loss_after": with_inv[0], "accuracy_after": with_inv[1],
            "loss_after_without_invertible": without_inv[0], "accuracy_after_without_invertible": without_inv[1]}
    if folder is not None:
        def write(tmp: Path) -> None:
            (tmp / "adapter").mkdir(parents=True)
            auto.save_adapter(str(tmp / "adapter"), name)
            atomic_write_csv(log, tmp / "mlm_log.csv")
            atomic_write_json({"digest": digest, "recipe": recipe, "finished": True, "heldout": held,
                               FILES_KEY: record_files(tmp, ("adapter",))}, tmp / "run.json")

        atomic_replace_dir(folder, write)
    return log, held


def load_hub_language_adapters(model, languages: Sequence[str]) -> dict[str, str]:
    """Load AdapterHub's pretrained MAD-X language adapters (``<lang>/wiki@ukp``, xlm-roberta-base).

    Needs internet access and an ``xlm-roberta-base`` encoder; fails with a clear message otherwise.
    """
    auto = enable_adapters(model)
    base_name = getattr(auto.config, "_name_or_path", "")
    if "xlm-roberta-base" not in str(base_name):
        raise RuntimeError(f"AdapterHub's MAD-X language adapters are for xlm-roberta-base, not {base_name!r}: "
                           "set use_hub_adapters=False to train language adapters with MLM instead.")
    names = {}
    for lang in languages:
        try:
            names[lang] = auto.load_adapter(HUB_ADAPTERS.format(lang=lang), config="seq_bn_inv",
                                            load_as=lang_adapter_name(lang))
        except Exception as exc:  # noqa: BLE001 - network, hub or format errors all mean the same here
            raise RuntimeError(
                f"Could not load AdapterHub's language adapter {HUB_ADAPTERS.format(lang=lang)!r} ({exc}). "
                "It needs internet access to the Hugging Face hub. Offline, use the quick profile or "
                "cfg.replace(adapters={'use_hub_adapters': False}) to train language adapters with MLM."
            ) from exc
    return names


def train_language_adapters(profile: Profile, *, languages: Sequence[str] | None = None, model=None,
                            corpus: dict[str, list[str]] | None = None, show_progress: bool = True
                            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train (or reuse) the shared MLM head and every language adapter of the profile (notebook 03 §3).

    Writes ``runs/<profile>/language-adapters/{_mlm_head,<lang>}/``; returns (the MLM log: head
    epochs and adapter steps, column ``phase``; the held-out table: one row per language, the
    head's loss and each adapter's before and after). With ``use_hub_adapters``
    AdapterHub's pretrained adapters are loaded instead (online only) and both tables are empty.
    """
    a = profile.adapters
    languages = language_tuple(languages if languages is not None else a.languages, "adapter languages")
    root = language_adapters_dir(profile.name)
    if a.use_hub_adapters:
        model = model if model is not None else load_encoder(profile.encoder, profile)
        names = load_hub_language_adapters(model, languages)
        auto = enable_adapters(model)
        for lang, name in names.items():
            with run_lock(root / lang, f"the language adapter {lang}"):
                (root / lang / "adapter").mkdir(parents=True, exist_ok=True)
                auto.save_adapter(str(root / lang / "adapter"), name)
                atomic_write_json({"digest": "hub", "source": HUB_ADAPTERS.format(lang=lang), "finished": True,
                                   FILES_KEY: record_files(root / lang, ("adapter",))}, root / lang / "run.json")
        return pd.DataFrame(columns=["phase", "step", "loss", "lang"]), pd.DataFrame(columns=["lang"])
    corpus = corpus if corpus is not None else mlm_corpus(profile, languages)
    corpus = {lang: corpus[lang] for lang in languages}
    model = model if model is not None else load_encoder(profile.encoder, profile)
    train_text, held_text = split_heldout(corpus, a.heldout_fraction)
    questions = question_corpus(profile, languages, exclude=held_text)
    head, head_log, head_held = train_mlm_head(model, corpus, profile, root / HEAD_DIR, questions=questions,
                                               show_progress=show_progress)
    chosen = head_record(profile)["chosen"]
    logs = [head_log[head_log.candidate == chosen].rename(columns={"epoch": "step", "heldout_loss": "loss"})
            [["step", "loss"]].assign(lang="all", phase="head")]
    held_rows = []
    for lang in tqdm(languages, desc="language adapters", disable=not show_progress):
        log, held = train_language_adapter(model, head, lang, train_text[lang], held_text[lang], profile,
                                           root / lang, show_progress=show_progress)
        logs.append(log[["step", "loss", "lang"]].assign(phase="adapter"))
        held_rows.append(held)
    kept = root / HEAD_DIR / CHOSEN_HELDOUT  # the kept head after it trained on past the screen
    head_held = (pd.read_csv(kept) if kept.is_file() else head_held[head_held.candidate == chosen]).drop(columns="candidate")
    heldout = head_held.merge(pd.DataFrame(held_rows), on=["lang", "heldout_texts"], how="left")
    return pd.concat(logs, ignore_index=True), heldout


def adapter_mlm_matrix(profile: Profile, model, corpus: dict[str, list[str]], *, bootstrap: int = 1000
                       ) -> pd.DataFrame:
    """Held-out MLM loss of every language's text through every language adapter, against the head
    alone (:func:`.cross_mlm.cross_language_mlm`; notebook 03 §3), on the first
    ``adapters.matrix_texts`` held-out texts of each language. ``model`` holds the adapters
    that :func:`train_language_adapters` trained or loaded. Reused from
    ``runs/<profile>/language-adapters/_matrix.csv`` while the head and adapters are the same."""
    root = language_adapters_dir(profile.name)
    languages = [lang for lang in corpus if (root / lang / "run.json").is_file()]
    digests = {lang: json.loads((root / lang / "run.json").read_text())["digest"] for lang in languages}
    head_digest = json.loads((root / HEAD_DIR / "run.json").read_text())["digest"]
    texts = profile.adapters.matrix_texts
    key = json_digest({"head": head_digest, "adapters": digests, "bootstrap": bootstrap, "texts": texts})
    folder = root / "_matrix"
    if _finished(folder, key, "matrix.csv"):
        return pd.read_csv(folder / "matrix.csv")
    head = _load_head(model, root / HEAD_DIR)
    _, held_text = split_heldout(corpus, profile.adapters.heldout_fraction)
    held_text = first_texts(held_text, texts)
    matrix = cross_language_mlm(model, head, {lang: held_text[lang] for lang in languages}, languages,
                                profile.adapters.mlm_max_seq_length, derived_seed(profile.seed, "matrix"),
                                bootstrap=bootstrap)

    def write(tmp: Path) -> None:
        atomic_write_csv(matrix, tmp / "matrix.csv")
        atomic_write_json({"digest": key, "finished": True, FILES_KEY: record_files(tmp, ("matrix.csv",))},
                          tmp / "run.json")

    with run_lock(folder, "the adapter MLM matrix"):
        atomic_replace_dir(folder, write)
    return matrix
