"""Which systems a profile has (notebook 04 §2): its zero-shot baselines and every finished run
of its recipe and seeds, each described by a :class:`~xlir_utils.systems.record.SystemSpec`."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict

from .. import language_adapters as la
from .. import paths
from ..encoders.encode import embedding_signature, encode
from ..encoders.registry import load_encoder
from ..io_utils import json_digest
from ..training import canonical_sampling, finished_runs, run_name
from ..training.spec import resolved_train
from ..sampling import sampling_alpha
from .record import ModelSlot, System, SystemSpec

logger = logging.getLogger(__name__)


def encoder_system(label: str, spec: SystemSpec, load: Callable[[], object], batch_tokens: int, *, name: str = "",
                   seed: int | None = None, shared_layers: int = 0) -> System:
    """A system from a plain sentence-transformers model (no routing) that ``load()`` returns; it is
    loaded on first use and let go by :func:`~xlir_utils.systems.record.one_model_at_a_time`.
    ``shared_layers``: the frozen lower layers it shares with the profile's other models (computed
    once; same numbers)."""
    slot = ModelSlot(load)

    def run(texts, langs, kind, cache=True):
        return encode(slot.get(), list(texts), kind, batch_tokens=batch_tokens, shared_layers=shared_layers,
                      cache=cache)

    return System(label, spec, lambda: f"{embedding_signature(slot.get())}|bt{batch_tokens}", run, name, seed,
                  slot)


def baseline_systems(profile) -> list[System]:
    """The profile's zero-shot baselines (notebook 04 §2), loaded when first used: they come first,
    so a hub model that cannot be had offline fails, with the fix, before any other work."""
    systems = []
    for name in profile.baselines:
        systems.append(encoder_system(name, SystemSpec("zero-shot", name),
                                      lambda name=name: load_encoder(name, profile), profile.encode_batch_tokens,
                                      shared_layers=profile.train.freeze_layers if name == profile.encoder else 0))
    return systems


def full_run_systems(profile) -> list[System]:
    """Every finished full fine-tuning run of the profile's recipe and seeds
    (``runs/<profile>/full-*``; notebook 04 §2). Runs of another recipe or seed (an earlier
    protocol, a wider ``XLIR_SEEDS``) stay on disk but are left out, with a note in the log."""
    recipe = json_digest(asdict(resolved_train(profile.train)))  # as make_spec records it
    systems = []
    for run_dir in finished_runs(paths.runs_dir(profile.name)):
        run = json.loads((run_dir / "run.json").read_text())["spec"]
        sampling, sweep_alpha = canonical_sampling(run["sampling"], run["alpha"] if run["sampling"] == "hybrid"
                                                   else None, profile.train.alpha)
        if run_dir.name != run_name(sampling, sweep_alpha, run["seed"]):
            continue  # not a full fine-tuning run (an adapter variant's folder holds a run record too)
        if run["seed"] not in profile.seeds or json_digest(run["train"]) != recipe:
            logger.info("left out %s: not the profile's recipe and seeds %s", run_dir.name, profile.seeds)
            continue
        alpha = sampling_alpha(sampling, profile.train.alpha if sweep_alpha is None else sweep_alpha)
        spec = SystemSpec("full", run["base_model"], sampling=sampling, alpha=alpha)
        systems.append(encoder_system(run_dir.name, spec, lambda d=run_dir: load_encoder(str(d / "model"), profile),
                                      profile.encode_batch_tokens,
                                      name=run_name(sampling, sweep_alpha), seed=run["seed"],
                                      shared_layers=run["train"].get("freeze_layers", 0)))
    return systems


def adapter_run_systems(profile) -> list[System]:
    """Every finished adapter variant of notebook 03 (``runs/<profile>/adapters-*``; notebook 04 §2).

    A per-side variant appears three times: languages never seen in training through their own
    language adapter, through the English one (``…-unseen-en``) and through none
    (``…-unseen-none``); the other variants once. Every seed of a variant is a run of one system.
    A routing that would send a language through an adapter no training step updated (e.g. a
    joint adapter started from random weights for a language absent from training) is left out,
    with a warning.
    """
    systems = []
    for run_dir in la.variant_run_dirs(profile.name):
        manifest = json.loads((run_dir / "model" / la.MANIFEST).read_text())
        seed = manifest.get("seed")
        if seed not in profile.seeds:
            logger.info("left out %s: not one of the profile's seeds %s", run_dir.name, profile.seeds)
            continue
        slot = ModelSlot(lambda d=run_dir: la.load_variant(d, profile=profile)[:2])  # (model, routing)
        variant = manifest["variant"]
        for unseen in la.UNSEEN_OPTIONS if variant in la.PER_SIDE else ("own",):
            if untrained := la.untrained_routes(manifest, unseen):
                logger.warning("left out %s routed with unseen=%s: it sends %s through language adapters that no "
                               "training step updated", run_dir.name, unseen, ", ".join(untrained))
                continue
            spec = SystemSpec("adapters", manifest["base_encoder"], sampling="hybrid", alpha=profile.train.alpha,
                              adapter_variant=variant, unseen_routing=unseen if variant in la.PER_SIDE else None)
            name = f"adapters-{variant}" + (f"-unseen-{unseen}" if spec.unseen_routing in ("en", "none") else "")

            def run(texts, langs, kind, cache=True, slot=slot, unseen=unseen, shared=manifest.get("freeze_layers", 0)):
                model, routing = slot.get()
                return la.encode_routed(model, list(texts), list(langs), kind, routing.with_unseen(unseen),
                                        batch_tokens=profile.encode_batch_tokens, shared_layers=shared, cache=cache)

            def fingerprint(slot=slot, unseen=unseen):
                model, routing = slot.get()
                return f"{embedding_signature(model)}|{routing.with_unseen(unseen).key}|bt{profile.encode_batch_tokens}"

            systems.append(System(name if seed is None else f"{name}-s{seed}", spec, fingerprint, run, name, seed,
                                  slot))
    return systems


def code_switching_systems(profile) -> list[System]:
    """The finished code-switched runs of the setting notebook 02 §7 chose on dev
    (``results/code_switching_choice.json``): *CS* (``cs-X-X``) and *CS + hybrid* (``cs-hybrid``),
    every seed of the profile (notebook 04 §2). None before notebook 02 §7 has chosen."""
    from ..code_switching.runs import CODE_SWITCHING_SAMPLINGS, chosen_setting, run_name as cs_run_name
    from ..outputs import CODE_SWITCHING_CHOICE_FILE, read_json, table_path

    if not table_path(CODE_SWITCHING_CHOICE_FILE, profile.name).is_file():
        logger.info("no code-switched systems: notebook 02 §7 has not chosen a setting in %r", profile.name)
        return []
    setting = chosen_setting(read_json(CODE_SWITCHING_CHOICE_FILE, profile.name))
    recipe = json_digest(asdict(resolved_train(profile.train)))
    finished = {d.name: d for d in finished_runs(paths.runs_dir(profile.name))}
    systems = []
    for sampling in CODE_SWITCHING_SAMPLINGS:
        for seed in profile.seeds:
            run_dir = finished.get(cs_run_name(sampling, setting, seed))
            if run_dir is None:
                continue
            run = json.loads((run_dir / "run.json").read_text())["spec"]
            if json_digest(run["train"]) != recipe:
                logger.info("left out %s: not the profile's recipe", run_dir.name)
                continue
            spec = SystemSpec("code-switching", run["base_model"], sampling=sampling,
                              alpha=sampling_alpha(sampling, profile.train.alpha))
            systems.append(encoder_system(run_dir.name, spec, lambda d=run_dir: load_encoder(str(d / "model"), profile),
                                          profile.encode_batch_tokens, name=f"cs-{sampling}", seed=seed,
                                          shared_layers=run["train"].get("freeze_layers", 0)))
    return systems


def all_systems(profile) -> list[System]:
    """Every system of a profile: the zero-shot baselines, the finished full fine-tuning runs,
    code-switched runs and adapter variants (notebooks 04 §2, 05 §5). No model is loaded yet: each
    is loaded when its system is first used; iterate with
    :func:`~xlir_utils.systems.record.one_model_at_a_time`."""
    return (baseline_systems(profile) + full_run_systems(profile) + code_switching_systems(profile)
            + adapter_run_systems(profile))
