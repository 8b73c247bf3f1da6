"""Which systems a profile has (notebook 04 §2): its zero-shot baselines and every finished run
of its recipe and seeds, each described by a :class:`~xlir_utils.systems.record.SystemSpec`."""
from __future__ import annotations

import json
import logging
from dataclasses import asdict

from .. import language_adapters as la
from .. import paths
from ..encoders.encode import embedding_signature, encode
from ..encoders.registry import load_encoder
from ..io_utils import json_digest
from ..training import canonical_sampling, finished_runs, run_name
from ..sampling import sampling_alpha
from .record import System, SystemSpec

logger = logging.getLogger(__name__)


def encoder_system(label: str, spec: SystemSpec, model, batch_tokens: int, *, name: str = "",
                   seed: int | None = None, shared_layers: int = 0) -> System:
    """A system from a plain sentence-transformers model (no routing). ``shared_layers``: the
    frozen lower layers it shares with the profile's other models (computed once; same numbers)."""

    def run(texts, langs, kind):
        return encode(model, list(texts), kind, batch_tokens=batch_tokens, shared_layers=shared_layers)

    return System(label, spec, f"{embedding_signature(model)}|bt{batch_tokens}", run, name, seed)


def baseline_systems(profile) -> list[System]:
    """The profile's zero-shot baselines (notebook 04 §2; hub models fail fast offline, with the fix)."""
    return [encoder_system(name, SystemSpec("zero-shot", name), load_encoder(name, profile),
                           profile.encode_batch_tokens,
                           shared_layers=profile.train.freeze_layers if name == profile.encoder else 0)
            for name in profile.baselines]


def full_run_systems(profile) -> list[System]:
    """Every finished full fine-tuning run of the profile's recipe and seeds
    (``runs/<profile>/full-*``; notebook 04 §2). Runs of another recipe or seed (an earlier
    protocol, a wider ``XLIR_SEEDS``) stay on disk but are left out, with a note in the log."""
    recipe = json_digest(asdict(profile.train))
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
        model = load_encoder(str(run_dir / "model"), profile)
        systems.append(encoder_system(run_dir.name, spec, model, profile.encode_batch_tokens,
                                      name=run_name(sampling, sweep_alpha), seed=run["seed"],
                                      shared_layers=run["train"].get("freeze_layers", 0)))
    return systems


def adapter_run_systems(profile) -> list[System]:
    """Every finished adapter variant of notebook 03 (``runs/<profile>/adapters-*``; notebook 04 §2).

    A per-side variant appears three times: languages never seen in training through their own
    language adapter, through the English one (``…-unseen-en``) and through none
    (``…-unseen-none``); the other variants once. Every seed of a variant is a run of one system.
    """
    systems = []
    for run_dir in la.variant_run_dirs(profile.name):
        if json.loads((run_dir / "model" / la.MANIFEST).read_text()).get("seed") not in profile.seeds:
            logger.info("left out %s: not one of the profile's seeds %s", run_dir.name, profile.seeds)
            continue
        model, routing, manifest = la.load_variant(run_dir, profile=profile)
        signature = embedding_signature(model)  # the routings below share the model
        options = la.UNSEEN_OPTIONS if routing.variant in la.PER_SIDE else ("own",)
        seed = manifest.get("seed")
        for r in [routing.with_unseen(u) for u in options]:
            spec = SystemSpec("adapters", manifest["base_encoder"], sampling="hybrid", alpha=profile.train.alpha,
                              adapter_variant=r.variant,
                              unseen_routing=r.unseen if r.variant in la.PER_SIDE else None)
            name = f"adapters-{r.variant}" + (f"-unseen-{r.unseen}" if spec.unseen_routing in ("en", "none") else "")

            def run(texts, langs, kind, r=r, model=model, shared=manifest.get("freeze_layers", 0)):
                return la.encode_routed(model, list(texts), list(langs), kind, r,
                                        batch_tokens=profile.encode_batch_tokens, shared_layers=shared)

            systems.append(System(name if seed is None else f"{name}-s{seed}", spec,
                                  f"{signature}|{r.key}|bt{profile.encode_batch_tokens}", run, name, seed))
    return systems


def all_systems(profile) -> list[System]:
    """Every system of a profile: the zero-shot baselines, the finished full fine-tuning runs and
    adapter variants (notebooks 04 §2, 05 §5)."""
    return baseline_systems(profile) + full_run_systems(profile) + adapter_run_systems(profile)
