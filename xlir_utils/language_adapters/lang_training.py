"""The shared MLM head, then one MAD-X language adapter per language (notebook 03 §3).

In MAD-X the MLM head is part of the pre-trained model and stays frozen; e5-small has none, so
a **shared head is trained first** (:func:`train_mlm_head`), on mixed-language text with the
base model frozen and no adapter active, and then **frozen** while each language adapter is
trained (:func:`train_language_adapter`): a language adapter is the only thing its MLM phase
changes. With ``use_hub_adapters`` (``paper``, ``xlm-roberta-base``) AdapterHub's pretrained
adapters are loaded instead. Everything is saved under ``runs/<profile>/language-adapters/``
and reused when its recipe digest matches.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import paths
from ..config import Profile
from ..encoders import load_encoder
from ..io_utils import atomic_replace_dir, atomic_write_csv, atomic_write_json, atomic_write_torch, json_digest
from ..seeding import derived_seed
from ..training import finished_record
from .corpus import mlm_corpus
from .mlm import MLMHead, mlm_training_loop, new_mlm_head, text_batches
from .plumbing import (FORMAT_VERSION, HUB_ADAPTERS, LANG_CONFIG, enable_adapters, lang_adapter_config,
                       lang_adapter_name, no_adapters)

HEAD_DIR = "_mlm_head"


def language_adapters_dir(profile: str) -> Path:
    """Where the language adapters of a profile live: ``runs/<profile>/language-adapters/`` (notebook 03 §6)."""
    return paths.runs_dir(profile) / "language-adapters"


def _head_steps(profile: Profile) -> int:
    return int(profile.adapters.mlm_head_steps or profile.adapters.mlm_steps)


def head_recipe(profile: Profile, corpus: dict[str, list[str]]) -> dict:
    """What determines the shared MLM head (its digest keys reuse)."""
    a = profile.adapters
    return {"format": FORMAT_VERSION, "encoder": profile.encoder, "steps": _head_steps(profile),
            "lr": profile.adapters.mlm_head_lr, "batch": a.mlm_batch_size, "max_len": a.mlm_max_seq_length,
            "seed": profile.seed, "texts": json_digest({k: v for k, v in sorted(corpus.items())})}


def adapter_recipe(profile: Profile, lang: str, texts: Sequence[str], head_digest: str,
                   steps: int | None = None) -> dict:
    """What determines a language adapter (its digest keys reuse)."""
    a = profile.adapters
    return {"format": FORMAT_VERSION, "encoder": profile.encoder, "lang": lang, "config": LANG_CONFIG,
            "reduction_factor": a.reduction_factor, "steps": a.mlm_steps if steps is None else steps,
            "lr": a.mlm_lr, "batch": a.mlm_batch_size, "max_len": a.mlm_max_seq_length, "seed": profile.seed,
            "texts": json_digest(list(texts)), "head": head_digest}


def _finished(folder: Path, digest: str) -> bool:
    return finished_record(folder, digest) is not None


def train_mlm_head(model, corpus: dict[str, list[str]], profile: Profile, folder: Path, *,
                   show_progress: bool = True) -> tuple[MLMHead, pd.DataFrame]:
    """Train (or reuse) the shared MLM head on mixed-language text; base frozen, no adapter active.

    Saved as ``folder/head.pt`` + ``mlm_log.csv`` + ``run.json``; reused when the recipe matches.
    """
    a = profile.adapters
    steps = _head_steps(profile)
    recipe = head_recipe(profile, corpus)
    digest = json_digest(recipe)
    if _finished(folder, digest):
        head = new_mlm_head(model)
        head.load_state_dict(torch.load(folder / "head.pt", weights_only=True))
        head.requires_grad_(False)
        head.digest = digest
        return head, pd.read_csv(folder / "mlm_log.csv")
    # every language in turn, each batch from one language (as MLM batches of a language adapter)
    langs = sorted(corpus)
    per_lang = {lang: text_batches(corpus[lang], a.mlm_batch_size, steps, derived_seed(profile.seed, "head", lang))
                for lang in langs}
    batches = [per_lang[langs[s % len(langs)]][s // len(langs)] for s in range(steps)]
    auto = enable_adapters(model)
    auto.requires_grad_(False)
    torch.manual_seed(derived_seed(profile.seed, "head-init"))
    head = new_mlm_head(model)
    head.train()
    auto.train()
    with no_adapters(auto):
        log = mlm_training_loop(model, head, list(head.parameters()), batches, a.mlm_head_lr, a.mlm_max_seq_length,
                                derived_seed(profile.seed, "head-masks"), "MLM head", show_progress)
    log["lang"] = [langs[s % len(langs)] for s in range(steps)]
    auto.eval()
    head.eval()
    head.requires_grad_(False)
    atomic_write_torch(head.state_dict(), folder / "head.pt")
    atomic_write_csv(log, folder / "mlm_log.csv")
    atomic_write_json({"digest": digest, "recipe": recipe, "finished": True}, folder / "run.json")
    head.digest = digest
    return head, log


def train_language_adapter(model, head: MLMHead, lang: str, texts: Sequence[str], profile: Profile,
                           folder: Path | None = None, *, steps: int | None = None,
                           show_progress: bool = True) -> pd.DataFrame:
    """Add ``la_<lang>`` (``seq_bn_inv``) to ``model`` and train it with MLM; only its weights change.

    With ``folder``: reuse a finished adapter there with the same recipe (it is loaded with
    ``load_adapter``), else train and save it (``save_adapter`` + ``mlm_log.csv`` + ``run.json``).
    Initialisation, batches and masks come from seeds derived from the profile's seed and the
    language. Returns the per-step log (step, loss, seconds, lang).
    """
    a = profile.adapters
    steps = a.mlm_steps if steps is None else steps
    name = lang_adapter_name(lang)
    auto = enable_adapters(model)
    recipe = adapter_recipe(profile, lang, texts, head.digest, steps)
    digest = json_digest(recipe)
    if folder is not None and _finished(folder, digest):
        if name in auto.adapters_config:
            auto.delete_adapter(name)
        auto.load_adapter(str(folder / "adapter"), load_as=name)
        auto.adapter_to(name, next(auto.parameters()).device)
        return pd.read_csv(folder / "mlm_log.csv")
    if name in auto.adapters_config:
        auto.delete_adapter(name)
    torch.manual_seed(derived_seed(profile.seed, "adapter-init", lang))
    auto.add_adapter(name, config=lang_adapter_config(a.reduction_factor))
    auto.train_adapter(name)  # freezes everything else; activates `name`
    head.requires_grad_(False)
    params = [p for p in auto.parameters() if p.requires_grad]
    batches = text_batches(list(texts), a.mlm_batch_size, steps, derived_seed(profile.seed, "adapter-batches", lang))
    log = mlm_training_loop(model, head, params, batches, a.mlm_lr, a.mlm_max_seq_length,
                            derived_seed(profile.seed, "adapter-masks", lang), f"MLM {lang}", show_progress)
    log["lang"] = lang
    auto.eval()
    auto.requires_grad_(False)
    auto.active_adapters = None
    if folder is not None:
        def write(tmp: Path) -> None:
            (tmp / "adapter").mkdir(parents=True)
            auto.save_adapter(str(tmp / "adapter"), name)
            atomic_write_csv(log, tmp / "mlm_log.csv")
            atomic_write_json({"digest": digest, "recipe": recipe, "finished": True,
                               "first_loss": float(log.loss.iloc[0]), "last_loss": float(log.loss.iloc[-1])},
                              tmp / "run.json")

        atomic_replace_dir(folder, write)
    return log


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
                            corpus: dict[str, list[str]] | None = None, show_progress: bool = True) -> pd.DataFrame:
    """Train (or reuse) the shared MLM head and every language adapter of the profile (notebook 03 §3).

    Writes ``runs/<profile>/language-adapters/{_mlm_head,<lang>}/``; returns the MLM log of
    all languages (columns step, loss, seconds, lang, phase). With ``use_hub_adapters`` the
    pretrained AdapterHub adapters are loaded instead (online only) and the log is empty.
    """
    from ..data.registry import language_tuple

    a = profile.adapters
    languages = language_tuple(languages if languages is not None else a.languages, "adapter languages")
    root = language_adapters_dir(profile.name)
    if a.use_hub_adapters:
        model = model if model is not None else load_encoder(profile.encoder, profile)
        names = load_hub_language_adapters(model, languages)
        auto = enable_adapters(model)
        for lang, name in names.items():
            (root / lang / "adapter").mkdir(parents=True, exist_ok=True)
            auto.save_adapter(str(root / lang / "adapter"), name)
            atomic_write_json({"digest": "hub", "source": HUB_ADAPTERS.format(lang=lang), "finished": True},
                              root / lang / "run.json")
        return pd.DataFrame(columns=["step", "loss", "seconds", "lang", "phase"])
    corpus = corpus if corpus is not None else mlm_corpus(profile, languages)
    corpus = {lang: corpus[lang] for lang in languages}
    head_digest = json_digest(head_recipe(profile, corpus))
    if _finished(root / HEAD_DIR, head_digest) and all(
            _finished(root / lang, json_digest(adapter_recipe(profile, lang, corpus[lang], head_digest)))
            for lang in languages):  # everything reusable: no need to load the model
        logs = [pd.read_csv(root / HEAD_DIR / "mlm_log.csv").assign(phase="head")]
        logs += [pd.read_csv(root / lang / "mlm_log.csv").assign(phase="adapter") for lang in languages]
        return pd.concat(logs, ignore_index=True)
    model = model if model is not None else load_encoder(profile.encoder, profile)
    head, head_log = train_mlm_head(model, corpus, profile, root / HEAD_DIR, show_progress=show_progress)
    logs = [head_log.assign(phase="head")]
    for lang in tqdm(languages, desc="language adapters", disable=not show_progress):
        logs.append(train_language_adapter(model, head, lang, corpus[lang], profile, root / lang,
                                           show_progress=show_progress).assign(phase="adapter"))
    return pd.concat(logs, ignore_index=True)
