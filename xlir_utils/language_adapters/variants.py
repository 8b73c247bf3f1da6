"""The adapter variants: a task adapter trained with hybrid batches on top of frozen language
adapters, saved with ``save_adapter`` and reloaded with ``load_adapter`` (notebooks 03 §4-5, 04 §2).

Same data, sampler (hybrid batches), seed and step budget for every variant; run folders
``runs/<profile>/adapters-<variant>``. The reference, full fine-tuning with hybrid batches, is
notebook 02's ``full-hybrid``.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from .. import paths
from ..config import Profile
from ..encoders import load_encoder
from ..io_utils import atomic_replace_dir, atomic_write_json
from .lang_training import language_adapters_dir
from .plumbing import FORMAT_VERSION, MANIFEST, TASK, TASK_CONFIG, enable_adapters, lang_adapter_name, task_adapter_config
from .routing import VARIANTS, Routing, make_routing, routed_embed_fn


def run_name(variant: str) -> str:
    """Run folder name of a variant: ``adapters-per-side``, ``adapters-task-only``, ``adapters-english``
    (notebook 03 §4)."""
    if variant not in VARIANTS:
        raise ValueError(f"Unknown adapter variant {variant!r}; choose one of {VARIANTS}.")
    return f"adapters-{variant}"


def variant_run_dirs(profile: str) -> list[Path]:
    """The finished adapter runs of a profile (``runs/<profile>/adapters-*`` with a manifest;
    notebooks 03 §5, 04 §2)."""
    from ..io_utils import recover_dir

    root = paths.runs_dir(profile)
    return [root / run_name(v) for v in VARIANTS
            if (recover_dir(root / run_name(v) / "model") / MANIFEST).is_file()]


def prepare_variant(model, variant: str, lang_adapter_dirs: dict[str, Path], task_reduction_factor: int,
                    seed: int, train_languages: Sequence[str] = ()) -> Routing:
    """Load the (frozen) language adapters a variant needs, add the task adapter, make only it trainable.

    ``train_adapter("task")`` is called first (it resets the active set-up); the routing is
    applied per forward pass by :func:`routed_embed_fn`.
    """
    auto = enable_adapters(model)
    device = next(auto.parameters()).device
    needed = variant_languages(variant, lang_adapter_dirs)
    for lang in needed:
        if lang not in lang_adapter_dirs:
            raise FileNotFoundError(f"no language adapter for {lang!r}: run train_language_adapters first")
        name = lang_adapter_name(lang)
        if name not in auto.adapters_config:
            auto.load_adapter(str(Path(lang_adapter_dirs[lang]) / "adapter"), load_as=name)
            auto.adapter_to(name, device)
    if TASK in auto.adapters_config:
        auto.delete_adapter(TASK)
    torch.manual_seed(seed)
    auto.add_adapter(TASK, config=task_adapter_config(task_reduction_factor))
    auto.adapter_to(TASK, device)
    auto.train_adapter(TASK)  # freezes the base and every language adapter; active = task
    return make_routing(variant, needed, train_languages)


def save_variant(model, folder: Path, routing: Routing, meta: dict) -> None:
    """Save the task adapter and the variant's language adapters (``save_adapter``) + a manifest."""
    auto = enable_adapters(model)
    names = routing.adapters
    manifest = {"format": FORMAT_VERSION, "variant": routing.variant, "task": routing.task,
                "own": dict(routing.own), "default": routing.default,
                "train_languages": list(routing.seen), "saved": names, **meta}

    def write(tmp: Path) -> None:
        for name in names:
            (tmp / "adapters" / name).mkdir(parents=True)
            auto.save_adapter(str(tmp / "adapters" / name), name)
        atomic_write_json(manifest, tmp / MANIFEST)

    atomic_replace_dir(folder, write)


def variant_languages(variant: str, languages) -> list[str]:
    """The languages whose adapters a variant uses (per-side: all of ``languages``)."""
    return {"per-side": sorted(languages), "english": ["en"], "task-only": []}[variant]


def adapter_languages(profile: Profile, pairs: pd.DataFrame | None = None) -> tuple[str, ...]:
    """The languages that get an adapter: the profile's, plus any training language they miss
    (notebook 03 §1).

    Per-side routing needs an adapter for every language a training pair uses (smoke's tiny
    MLQA-R slice has ar/es/hi besides en).
    """
    langs = list(profile.adapters.languages)
    if pairs is not None:
        langs += sorted((set(pairs.query_lang) | set(pairs.passage_lang)) - set(langs))
    return tuple(langs)


def train_variant(profile: Profile, variant: str, pairs: pd.DataFrame, *, model=None,
                  lang_dir: Path | None = None, run_dir: Path | None = None, stop_after: int | None = None,
                  languages: Sequence[str] | None = None, show_progress: bool = True) -> dict:
    """Train the task adapter of one variant with hybrid batches (:func:`training.train_run`;
    notebook 03 §4).

    Same sampler, seed and step budget for every variant: ``profile.train`` with
    ``steps=adapters.task_steps`` and ``lr=adapters.task_lr``. Writes
    ``runs/<profile>/adapters-<variant>/`` (``model/`` holds the adapters + manifest).
    """
    from .. import training

    a = profile.adapters
    lang_dir = lang_dir or language_adapters_dir(profile.name)
    run_dir = run_dir or paths.runs_dir(profile.name) / run_name(variant)
    languages = tuple(languages or adapter_languages(profile, pairs))
    lang_dirs = {p.name: p for p in sorted(lang_dir.iterdir())
                 if (p / "run.json").is_file() and (p / "adapter").is_dir()} if lang_dir.is_dir() else {}
    used = variant_languages(variant, languages)
    missing = [lang for lang in used if lang not in lang_dirs]
    if missing:
        raise FileNotFoundError(f"language adapters missing under {lang_dir}: {missing}. "
                                "Run language_adapters.train_language_adapters(cfg, languages=...) first.")
    lang_dirs = {k: v for k, v in lang_dirs.items() if k in languages}
    la_digests = {lang: json.loads((lang_dirs[lang] / "run.json").read_text())["digest"] for lang in used}
    cfg = dataclasses.replace(profile.train, steps=a.task_steps, lr=a.task_lr)
    extra = json.dumps({"variant": variant, "task_config": TASK_CONFIG, "task_rf": a.task_reduction_factor,
                        "lang_adapters": la_digests, "format": FORMAT_VERSION}, sort_keys=True)
    spec = training.make_spec(run_name(variant), profile.encoder, "hybrid", cfg, profile.seed, pairs, extra=extra)
    if (record := training.finished_record(run_dir, spec.digest())) is not None \
            and (run_dir / "model" / MANIFEST).is_file():
        return record  # reuse without loading the model
    model = model if model is not None else load_encoder(profile.encoder, profile)
    train_languages = sorted(set(pairs.query_lang) | set(pairs.passage_lang))
    routing = prepare_variant(model, variant, lang_dirs, a.task_reduction_factor, profile.seed, train_languages)
    routing = dataclasses.replace(routing, tag=spec.digest())
    meta = {"base_encoder": profile.encoder, "profile": profile.name, "digest": spec.digest(),
            "lang_adapter_digests": la_digests}

    def save_fn(m, folder):
        save_variant(m, folder, routing, meta)

    saved_len = model.max_seq_length
    model.max_seq_length = cfg.max_seq_length  # training truncates as notebook 02 does
    try:
        return training.train_run(model, pairs, spec, run_dir, embed_fn=routed_embed_fn(routing),
                                  save_fn=save_fn, stop_after=stop_after, show_progress=show_progress)
    finally:
        model.max_seq_length = saved_len


def load_variant(run_dir: Path, *, unseen: str = "own", profile: Profile | None = None, model=None):
    """Rebuild a trained variant: ``(model, routing)`` (notebooks 03 §5, 04 §2).

    The base encoder is loaded with ``load_encoder`` and the adapters with ``load_adapter``
    (never through ``SentenceTransformer(folder)``, which drops them). ``unseen="en"``
    routes languages that the task adapter never saw through the English adapter.
    """
    run_dir = Path(run_dir)
    folder = run_dir / "model" if (run_dir / "model" / MANIFEST).is_file() else run_dir
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path} not found: is {run_dir} a finished adapters-* run of notebook 03?")
    manifest = json.loads(manifest_path.read_text())
    model = model if model is not None else load_encoder(manifest["base_encoder"], profile)
    auto = enable_adapters(model)
    device = next(auto.parameters()).device
    for name in manifest["saved"]:
        if name in auto.adapters_config:
            auto.delete_adapter(name)
        auto.load_adapter(str(folder / "adapters" / name), load_as=name)
        auto.adapter_to(name, device)
    auto.requires_grad_(False)
    auto.active_adapters = None
    model.eval()
    routing = Routing(manifest["variant"], manifest["task"], tuple(sorted(manifest["own"].items())),
                      manifest["default"], tuple(manifest["train_languages"]), "own", manifest["digest"])
    if unseen != "own":
        routing = routing.with_unseen(unseen)
    return model, routing
