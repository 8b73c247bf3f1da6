"""The adapter variants: adapters trained with hybrid batches for retrieval, saved with
``save_adapter`` and reloaded with ``load_adapter`` (notebooks 03 §4-5, 04 §2).

Every variant has the same data, sampler (hybrid batches), recipe and step budget as full
fine-tuning (notebook 02), the adapters' learning rate chosen on the development set, and runs
with every seed of the profile; run folders ``runs/<profile>/adapters-<variant>-s<seed>``.

================  ==============================================  ==========================================
variant           what each side goes through                     what is trained
================  ==============================================  ==========================================
task-only         a task adapter                                  the task adapter
mlm-per-side      its language's MLM adapter (frozen) + task      the task adapter
joint-per-side    its language's adapter + task                   task adapter *and* language adapters,
                                                                  initialised from MLM (from scratch if the
                                                                  MLM head did not learn)
shared-control    one shared adapter as large as LA + task        that adapter (the parameter-matched control)
english           the English MLM adapter (frozen) + task         the task adapter
================  ==============================================  ==========================================

X-Y batches route the two sides of a pair through *different* language adapters, so the joint
variant's loss pulls the language adapters into one space (Huang et al. 2024; X-MOD). The
invertible part of a MAD-X adapter is dropped for retrieval (Litschko et al. 2022), so every
variant shares the frozen prefix below ``train.freeze_layers`` and trains on top of it
(:mod:`xlir_utils.training.frozen_prefix`). The reference, full fine-tuning with hybrid batches, is
notebook 02's ``full-hybrid``.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch

from .. import paths
from ..config import Profile
from ..encoders import load_encoder
from ..encoders.prefix import prefix_fingerprint
from ..errors import BusyError, DamagedFileError
from ..file_digests import digest_problems
from ..heap import release_dropped_models
from ..io_utils import atomic_replace_dir, atomic_write_json, exclusive_lock, recover_dir
from ..seeding import derived_seed
from ..training import distributed as D
from ..training import finished_record, make_spec, pairs_digest, train_run
from ..training.frozen_prefix import PrefixCache
from ..training.spec import FILES_KEY, run_lock
from .lang_training import adapter_layers, head_record, language_adapters_dir
from .plumbing import (FORMAT_VERSION, MANIFEST, TASK, TASK_CONFIG, drop_invertible, enable_adapters,
                       lang_adapter_config, lang_adapter_name, task_adapter_config)
from .routing import PER_SIDE, VARIANTS, Routing, make_routing, routed_embed_fn

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

MLM_VARIANTS = ("mlm-per-side", "english")  # need MLM language adapters (a trained head)
_PREFIX_CACHES: dict = {}


def variant_run_name(variant: str, seed: int | None = None) -> str:
    """Run folder name of a variant: ``adapters-task-only-s13`` (notebook 03 §4)."""
    if variant not in VARIANTS:
        raise ValueError(f"Unknown adapter variant {variant!r}; choose one of {VARIANTS}.")
    return f"adapters-{variant}" + ("" if seed is None else f"-s{seed}")


def grid_run_dir(profile_name: str, variant: str, lr: float, seed: int) -> Path:
    """Where one run of the learning-rate grid lives (notebook 03 §4):
    ``runs/<profile>/adapter-lr-grid/<variant>-lr<lr>-s<seed>/``."""
    return paths.runs_dir(profile_name) / "adapter-lr-grid" / f"{variant}-lr{lr:g}-s{seed}"


def _adopt_finished(source: Path, run_dir: Path, digest: str) -> dict | None:
    """Copy the finished run ``source`` of recipe ``digest`` (intact, with its adapters) into
    ``run_dir`` and return its record there; None when ``source`` holds no such run, is being
    written by another process, or when several processes train together (``torchrun``)."""
    if source == run_dir or not source.is_dir() or D.context().world > 1:
        return None
    try:
        with exclusive_lock(source, f"run {source.name}"):
            if finished_record(source, digest) is None or not (source / "model" / MANIFEST).is_file():
                return None
            atomic_replace_dir(run_dir, lambda build: shutil.copytree(source, build))
    except BusyError:
        return None
    return finished_record(run_dir, digest)


def variant_run_dirs(profile: str, *, seed: int | None = None,
                     variants: Sequence[str] | None = None) -> list[Path]:
    """The finished adapter runs of a profile (``runs/<profile>/adapters-*`` with a manifest;
    notebooks 03 §5, 04 §2), in variant order then by name; only ``seed``'s and ``variants``'
    runs where given (read from the manifests, so a look at one seed loads no other model)."""
    root = paths.runs_dir(profile)
    found = [d for d in sorted(root.glob("adapters-*")) if d.is_dir() and not d.name.endswith((".old", ".tmp"))
             and (recover_dir(d / "model") / MANIFEST).is_file()]
    manifests = {d: json.loads((d / "model" / MANIFEST).read_text()) for d in found}
    found = [d for d in found if (seed is None or manifests[d]["seed"] == seed)
             and (variants is None or manifests[d]["variant"] in variants)]
    rank = {v: i for i, v in enumerate(VARIANTS)}
    return sorted(found, key=lambda d: (rank.get(manifests[d]["variant"], 99), d.name))


def control_reduction_factor(hidden: int, lang_rf: float, task_rf: float, lang_share: float = 1.0) -> float:
    """The reduction factor of one shared adapter (in every layer the task adapter has) as large as a
    language adapter plus the task adapter (the capacity each input goes through in a per-side
    variant); ``lang_share``: the share of those layers the language adapter lives in."""
    bottleneck = int(hidden / task_rf) + round(int(hidden / lang_rf) * lang_share)
    return hidden / (bottleneck + 1e-6)  # AdapterHub takes int(hidden / factor): keep it from rounding down


def variant_languages(variant: str, languages) -> list[str]:
    """The languages whose adapters a variant uses (per-side: all of ``languages``)."""
    if variant in PER_SIDE:
        return sorted(languages)
    return ["en"] if variant == "english" else []


def adapter_languages(profile: Profile, pairs: pd.DataFrame | None = None) -> tuple[str, ...]:
    """The languages that get an adapter: the profile's, plus any training language they miss
    (notebook 03 §1)."""
    langs = list(profile.adapters.languages)
    if pairs is not None:
        langs += sorted((set(pairs.query_lang) | set(pairs.passage_lang)) - set(langs))
    return tuple(langs)


def joint_init(profile: Profile) -> str:
    """Where the joint variant's language adapters start: ``mlm`` (the MLM-trained adapters) when
    ``adapters.joint_from_mlm`` and a head was trained, else ``scratch`` (notebook 03 §4)."""
    return "mlm" if head_record(profile) is not None and profile.adapters.joint_from_mlm else "scratch"


def prepare_variant(model, variant: str, lang_adapter_dirs: dict[str, Path], profile: Profile, seed: int,
                    train_languages: Sequence[str] = (), languages: Sequence[str] = ()) -> Routing:
    """Load the language adapters a variant needs (their invertible parts dropped), add its task
    adapter above the frozen prefix, and make trainable what the variant trains (notebook 03 §4).

    ``train_adapter("task")`` is called first (it resets the active set-up); the routing is applied
    per forward pass by :func:`routed_embed_fn`.
    """
    a = profile.adapters
    auto = enable_adapters(model)
    device = next(auto.parameters()).device
    hidden = auto.config.hidden_size
    leave_out = range(profile.train.freeze_layers)
    needed = variant_languages(variant, languages or lang_adapter_dirs)
    scratch = variant == "joint-per-side" and joint_init(profile) == "scratch"
    for lang in needed:
        name = lang_adapter_name(lang)
        if name in auto.adapters_config:
            auto.delete_adapter(name)
        if scratch:
            torch.manual_seed(derived_seed(seed, "joint-init", lang))
            auto.add_adapter(name, config=lang_adapter_config(a.reduction_factor, leave_out))
        else:
            if lang not in lang_adapter_dirs:
                raise FileNotFoundError(f"no language adapter for {lang!r}: run train_language_adapters first")
            auto.load_adapter(str(Path(lang_adapter_dirs[lang]) / "adapter"), load_as=name)
        drop_invertible(auto, name)
        auto.adapter_to(name, device)
    if TASK in auto.adapters_config:
        auto.delete_adapter(TASK)
    rf = a.task_reduction_factor
    if variant == "shared-control":
        n_layers, frozen = auto.config.num_hidden_layers, profile.train.freeze_layers
        head = head_record(profile)
        lang_layers = adapter_layers(n_layers, frozen, head["layer"] if head else -1)
        rf = control_reduction_factor(hidden, a.reduction_factor, rf, len(lang_layers) / max(1, n_layers - frozen))
    torch.manual_seed(seed)
    auto.add_adapter(TASK, config=task_adapter_config(rf, leave_out))
    auto.adapter_to(TASK, device)
    auto.train_adapter(TASK)  # freezes the base and every language adapter; active = task
    if variant == "joint-per-side":
        for n, p in auto.named_parameters():
            if any(f".{lang_adapter_name(lang)}." in n for lang in needed):
                p.requires_grad_(True)
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


def _prefix_cache(model, profile: Profile, pairs: pd.DataFrame, max_seq_length: int) -> PrefixCache:
    """The frozen prefix of the training texts, computed once per process (every variant and seed shares it)."""
    k = profile.train.freeze_layers
    key = (prefix_fingerprint(model, k), pairs_digest(pairs), max_seq_length, profile.train.precision)
    if key not in _PREFIX_CACHES:
        _PREFIX_CACHES.clear()  # one training set at a time
        texts = {"query": pairs["query"].tolist(), "passage": pairs["passage"].tolist()}
        if "negative" in pairs.columns:
            texts["passage"] += pairs["negative"].tolist()
        _PREFIX_CACHES[key] = PrefixCache(model, k, texts, max_seq_length=max_seq_length,
                                          precision=profile.train.precision)
    return _PREFIX_CACHES[key]


def train_variant(profile: Profile, variant: str, pairs: pd.DataFrame, *, seed: int | None = None, model=None,
                  lang_dir: Path | None = None, run_dir: Path | None = None, stop_after: int | None = None,
                  languages: Sequence[str] | None = None, show_progress: bool = True) -> dict:
    """Train one adapter variant with hybrid batches (:func:`xlir_utils.training.train_run`; notebook 03 §4).

    The recipe and step budget of full fine-tuning (``profile.train``), the adapters' learning rate
    :func:`variant_lr`. Writes ``runs/<profile>/adapters-<variant>-s<seed>/`` (``model/`` holds
    the adapters + manifest). With a frozen prefix, only the layers above it run. A finished run
    with the same recipe (variant, adapter set-up, language adapters' digests, data, seed) and
    intact saved files is reused without loading a model, and so is (copied) the learning-rate
    grid's run of the same recipe (:func:`grid_run_dir`); an interrupted or damaged one is
    trained again (from its checkpoint if one is left).

    Args:
        profile: the :class:`~xlir_utils.config.Profile` (its ``train`` recipe and ``adapters`` set-up).
        variant: one of :data:`~xlir_utils.language_adapters.VARIANTS` (``task-only``,
            ``mlm-per-side``, ``joint-per-side``, ``shared-control``, ``english``).
        pairs: the training pairs (:func:`xlir_utils.data.training_pairs`).
        seed: the training seed (default: the profile's).
        model: the base encoder to train in place (default: ``load_encoder(profile.encoder)``).
        lang_dir: where the language adapters are (default: :func:`language_adapters_dir`).
        run_dir: the run folder (default: ``runs/<profile>/<variant_run_name(variant, seed)>``).
        stop_after: interrupt after that many steps, leaving the checkpoint (a simulated crash).
        languages: the languages with an adapter (default: :func:`adapter_languages`).
        show_progress: show a progress bar.

    Returns:
        The run record (as :func:`xlir_utils.training.train_run` returns it); ``spec["extra"]``
        holds the variant's set-up as JSON.

    Raises:
        RuntimeError: an MLM variant (``mlm-per-side``, ``english``) before the language adapters were trained.
        FileNotFoundError: a language adapter the variant needs was not trained.
        DamagedFileError: a language adapter the variant needs is damaged (train them again).
        BusyError: another process is writing this run folder.

    Example::

        from xlir_utils import config, data, paths
        from xlir_utils import language_adapters as la

        cfg = config.load("smoke")
        pairs, _ = data.training_pairs(cfg, data.evaluation_sets(cfg))
        record = la.train_variant(cfg, "task-only", pairs, seed=13)  # needs no language adapter
        run_dir = paths.runs_dir(cfg.name) / la.variant_run_name("task-only", 13)
        model, routing, manifest = la.load_variant(run_dir, profile=cfg)
    """
    a = profile.adapters
    seed = profile.seed if seed is None else int(seed)
    if variant in MLM_VARIANTS and head_record(profile) is None and not a.use_hub_adapters:
        raise RuntimeError(f"variant {variant!r} needs MLM language adapters, and none were trained: run "
                           "language_adapters.train_language_adapters(cfg) first (notebook 03 §3)")
    lang_dir = lang_dir or language_adapters_dir(profile.name)
    run_dir = run_dir or paths.runs_dir(profile.name) / variant_run_name(variant, seed)
    languages = tuple(languages or adapter_languages(profile, pairs))
    lang_dirs = {p.name: p for p in sorted(lang_dir.iterdir())
                 if (p / "run.json").is_file() and (p / "adapter").is_dir()} if lang_dir.is_dir() else {}
    init = joint_init(profile) if variant == "joint-per-side" else "mlm"
    used = variant_languages(variant, languages)
    if init == "mlm":
        missing = [lang for lang in used if lang not in lang_dirs]
        if missing:
            raise FileNotFoundError(f"language adapters missing under {lang_dir}: {missing}. "
                                    "Run language_adapters.train_language_adapters(cfg, languages=...) first.")
    la_digests = {lang: json.loads((lang_dirs[lang] / "run.json").read_text())["digest"]
                  for lang in used if init == "mlm"}
    cfg = dataclasses.replace(profile.train, lr=variant_lr(profile, variant))
    extra = json.dumps({"variant": variant, "task_config": TASK_CONFIG, "task_rf": a.task_reduction_factor,
                        "lang_rf": a.reduction_factor, "init": init, "lang_adapters": la_digests,
                        "format": FORMAT_VERSION}, sort_keys=True)
    spec = make_spec(variant_run_name(variant, seed), profile.encoder, "hybrid", cfg, seed, pairs, extra=extra)
    if (record := finished_record(run_dir, spec.digest())) is not None \
            and (run_dir / "model" / MANIFEST).is_file():
        return record  # reuse without loading the model
    with run_lock(run_dir, f"run {spec.name}"):  # a second process stops here, before loading the model
        # the learning-rate grid's run at this rate and seed is the same recipe: copied, not trained again
        if (record := _adopt_finished(grid_run_dir(profile.name, variant, cfg.lr, seed), run_dir,
                                      spec.digest())) is not None:
            return record
        for lang in la_digests:
            _check_language_adapter(lang_dirs[lang], lang)
        loaded = model is None
        model = model if model is not None else load_encoder(profile.encoder, profile)
        train_languages = sorted(set(pairs.query_lang) | set(pairs.passage_lang))
        routing = prepare_variant(model, variant, {k: v for k, v in lang_dirs.items() if k in languages}, profile,
                                  seed, train_languages, languages)
        routing = dataclasses.replace(routing, tag=spec.digest())
        meta = {"base_encoder": profile.encoder, "profile": profile.name, "digest": spec.digest(), "seed": seed,
                "init": init, "lang_adapter_digests": la_digests, "freeze_layers": profile.train.freeze_layers}
        cache = _prefix_cache(model, profile, pairs, cfg.max_seq_length) if profile.train.freeze_layers else None

        def save_fn(m, folder):
            save_variant(m, folder, routing, meta)

        saved_len = model.max_seq_length
        model.max_seq_length = cfg.max_seq_length  # training truncates as notebook 02 does
        try:
            return train_run(model, pairs, spec, run_dir, embed_fn=routed_embed_fn(routing, cache),
                             save_fn=save_fn, stop_after=stop_after, show_progress=show_progress)
        finally:
            model.max_seq_length = saved_len
            if loaded:  # ours to let go (see xlir_utils.heap.release_dropped_models)
                del model, cache
                release_dropped_models()


JOINT_RATE_VARIANTS = ("joint-per-side", "shared-control")  # train language-adapter-sized weights with the retrieval loss


def variant_lr(profile: Profile, variant: str) -> float:
    """The learning rate a variant trains at: ``adapters.joint_lr`` (when set) for the variants
    that train language adapters, or the shared control of their size, with the retrieval loss
    (``joint-per-side``, ``shared-control``); else ``adapters.task_lr`` (notebook 03 §4 chooses both on dev)."""
    a = profile.adapters
    return a.joint_lr if variant in JOINT_RATE_VARIANTS and a.joint_lr is not None else a.task_lr


def _check_language_adapter(folder: Path, lang: str) -> None:
    """Raise :class:`DamagedFileError` when a language adapter's files no longer match its record."""
    record = json.loads((folder / "run.json").read_text())
    if problems := digest_problems(folder, record.get(FILES_KEY, {})):
        raise DamagedFileError(f"the language adapter {lang!r} in {folder} is damaged ({'; '.join(problems)}): run "
                               "language_adapters.train_language_adapters(cfg) again (notebook 03 §3), which "
                               "trains it again, then this variant.")


def saved_routing(manifest: dict) -> Routing:
    """The routing a saved variant was trained with (its ``xlir_adapters.json`` manifest)."""
    return Routing(manifest["variant"], manifest["task"], tuple(sorted(manifest["own"].items())),
                   manifest["default"], tuple(manifest["train_languages"]), "own", manifest["digest"])


def trained_language_adapters(manifest: dict) -> set[str]:
    """The languages whose adapter in a saved variant some training step updated: every
    MLM-trained (or AdapterHub) one it loaded, and in the joint variant those of the training
    languages (notebook 04 §2)."""
    trained = set(manifest.get("lang_adapter_digests") or {})
    if manifest["variant"] == "joint-per-side":
        trained |= set(manifest.get("train_languages", []))
    return trained


def untrained_routes(manifest: dict, unseen: str = "own", languages=None) -> list[str]:
    """The languages that the saved variant, routed with ``unseen``, would send through a language
    adapter that no training step updated (such a routing is never evaluated; notebook 04 §2)."""
    routing = saved_routing(manifest).with_unseen(unseen) if unseen != "own" else saved_routing(manifest)
    languages = sorted(languages if languages is not None else (set(manifest["own"]) | {"en"}))
    trained = trained_language_adapters(manifest)
    return [lang for lang in languages
            if (name := routing.adapter_for(lang)) is not None and name.removeprefix("la_") not in trained]


def load_variant(run_dir: Path, *, unseen: str = "own", profile: Profile | None = None,
                 model=None) -> tuple[SentenceTransformer, Routing, dict]:
    """Rebuild a trained variant: ``(model, routing, manifest)`` (notebooks 03 §5, 04 §2).

    The base encoder is loaded with ``load_encoder`` (or ``model`` is used) and the adapters with
    ``load_adapter`` (never through ``SentenceTransformer(folder)``, which drops them); invertible
    adapters are dropped, as in training. ``unseen="en"`` (or ``"none"``) routes languages that the
    task adapter never saw through the English adapter (or no language adapter). ``manifest`` is
    the run's saved manifest (variant, routing, base encoder, digest, seed, frozen layers).
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
        drop_invertible(auto, name)
        auto.adapter_to(name, device)
    auto.requires_grad_(False)
    auto.active_adapters = None
    model.eval()
    routing = saved_routing(manifest)
    if unseen != "own":
        routing = routing.with_unseen(unseen)
    return model, routing, manifest


def variants_summary(records: Sequence[dict]) -> pd.DataFrame:
    """One row per finished variant run: variant, seed, how its language adapters started, trainable
    parameters' budget, realised X-X share, minutes, final loss (notebook 03 §4)."""
    rows = []
    for r in records:
        extra = json.loads(r["spec"]["extra"])
        rows.append({"run": r["spec"]["name"], "variant": extra["variant"], "seed": r["spec"]["seed"],
                     "init": extra["init"] if extra["variant"] == "joint-per-side" else "",
                     "steps": r["steps"], "lr": r["spec"]["train"]["lr"], "mono_share": r["mono_share"],
                     "train_minutes": r["train_seconds"] / 60, "loss_last10": r["final_loss_mean_last10"]})
    return pd.DataFrame(rows)
