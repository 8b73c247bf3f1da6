"""The systems notebook 04 evaluates: zero-shot baselines and every finished run.

A *system* is a label, a training description and a way to embed texts. Embeddings of each
(system, dataset) are kept under the cache (``eval/<profile>/<system>/<dataset>.npz``) with
the fingerprint of what produced them, so notebook 05 (bias analysis, LIR) reads them
without re-encoding, and a changed model is never read stale.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import paths
from .io_utils import atomic_write_npz

logger = logging.getLogger(__name__)

EncodeFn = Callable[[Sequence[str], Sequence[str], str], np.ndarray]  # (texts, langs, kind)


@dataclass(frozen=True)
class System:
    """Something to evaluate: ``encode(texts, langs, kind)`` returns L2-normalised rows."""

    label: str  # unique, e.g. "e5-small-offline", "full-hybrid-s13", "adapters-per-side-s13"
    training: str  # "zero-shot", "X-X", "X-Y", "hybrid", "hybrid (alpha=0.25)", "adapters: per-side", ...
    model_name: str  # the base model
    fingerprint: str  # what produced the embeddings: model, precision, batch budget (keys the stored embeddings)
    encode: EncodeFn
    group: str = ""  # the system a seeded run belongs to ("full-hybrid"); "" = the label itself
    seed: int | None = None  # the run's training seed (None for a zero-shot encoder)

    @property
    def system(self) -> str:
        """The name of the system this run is a seed of (the label for unseeded systems)."""
        return self.group or self.label


def encoder_system(label: str, training: str, model, model_name: str, batch_tokens: int, *, group: str = "",
                   seed: int | None = None, shared_layers: int = 0) -> System:
    """A system from a plain sentence-transformers model (no routing). ``shared_layers``: the
    frozen lower layers it shares with the profile's other models (computed once; same numbers)."""
    from .encoders.encode import embedding_signature, encode

    def run(texts, langs, kind):
        return encode(model, list(texts), kind, batch_tokens=batch_tokens, shared_layers=shared_layers)

    return System(label, training, model_name, f"{embedding_signature(model)}|bt{batch_tokens}", run, group, seed)


def baseline_systems(profile) -> list[System]:
    """The profile's zero-shot baselines (notebook 04 §2; hub models fail fast offline, with the fix)."""
    from .encoders.registry import load_encoder

    return [encoder_system(name, "zero-shot", load_encoder(name, profile), name, profile.encode_batch_tokens,
                           shared_layers=profile.train.freeze_layers if name == profile.encoder else 0)
            for name in profile.baselines]


def full_run_systems(profile) -> list[System]:
    """Every finished full fine-tuning run of the profile's recipe and seeds
    (``runs/<profile>/full-*``; notebook 04 §2). Runs of another recipe or seed (an earlier
    protocol, a wider ``XLIR_SEEDS``) stay on disk but are left out, with a note in the log."""
    from dataclasses import asdict

    from .encoders.registry import load_encoder
    from .io_utils import json_digest
    from .training import canonical_sampling, finished_runs, run_name

    recipe = json_digest(asdict(profile.train))
    systems = []
    for run_dir in finished_runs(paths.runs_dir(profile.name)):
        if not run_dir.name.startswith("full-"):
            continue
        spec = json.loads((run_dir / "run.json").read_text())["spec"]
        if spec["seed"] not in profile.seeds or json_digest(spec["train"]) != recipe:
            logger.info("left out %s: not the profile's recipe and seeds %s", run_dir.name, profile.seeds)
            continue
        sampling, alpha = canonical_sampling(spec["sampling"], spec["alpha"] if spec["sampling"] == "hybrid" else None,
                                             profile.train.alpha)
        training = sampling if alpha is None else f"{sampling} (alpha={alpha:g})"
        model = load_encoder(str(run_dir / "model"), profile)
        systems.append(encoder_system(run_dir.name, training, model, spec["base_model"], profile.encode_batch_tokens,
                                      group=run_name(sampling, alpha), seed=spec["seed"],
                                      shared_layers=spec["train"].get("freeze_layers", 0)))
    return systems


def embeddings_path(profile_name: str, label: str, dataset: str) -> Path:
    """Where a system's embeddings of one dataset are stored (under the cache)."""
    return paths.cache_dir() / "eval" / profile_name / label / f"{dataset}.npz"


def _store_key(system: System, rset, candidate_text: str) -> str:
    h = hashlib.sha256()
    for text in [*rset.queries.text, *rset.candidate_texts(candidate_text)]:
        data = text.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little") + data)
    return f"{system.fingerprint}|{candidate_text}|{len(rset.queries)}|{len(rset.candidates)}|{h.hexdigest()[:16]}"


def embed_retrieval_set(system: System, rset, candidate_text: str, profile_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Query and candidate embeddings of a retrieval set: from the store when it holds this
    system's embeddings of these texts, else encoded and stored (notebooks 04 §3, 05)."""
    path = embeddings_path(profile_name, system.label, rset.name)
    key = _store_key(system, rset, candidate_text)
    stored = load_embeddings(path, key)
    if stored is not None:
        return stored
    q = system.encode(rset.queries.text.tolist(), rset.queries.lang.tolist(), "query")
    c = system.encode(rset.candidate_texts(candidate_text), rset.candidates.lang.tolist(), "passage")
    try:
        atomic_write_npz(path, queries=q.astype(np.float32), candidates=c.astype(np.float32), key=np.array(key))
    except OSError as exc:
        logger.warning("could not store the embeddings of %s in %s (%s); continuing without the store",
                       system.label, path, exc)
    return q, c


def load_embeddings(path: Path, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Stored (queries, candidates) embeddings of ``key``, or None: absent, of another key, or
    unreadable (then with a warning; the caller encodes again and replaces the file)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["key"]) != key:
                return None
            return f["queries"], f["candidates"]
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt npz (BadZipFile, EOFError, ...)
        logger.warning("stored embeddings %s are unreadable (%s: %s); encoding again", path, type(exc).__name__, exc)
        return None


def all_systems(profile) -> list[System]:
    """Every system of a profile: the zero-shot baselines, the finished full fine-tuning runs and
    adapter variants (notebooks 04 §2, 05 §5)."""
    return baseline_systems(profile) + full_run_systems(profile) + adapter_run_systems(profile)


def evaluate_systems(profile, system_list: Sequence[System], rsets: dict, *,
                     skip: Callable[[System, str], bool] | None = None):
    """Encode and evaluate every system on every retrieval set (notebook 04 §3).

    Returns (tidy table, per-query multilingual rows, per-query values of every run for the seed
    statistics). ``skip(system, dataset)`` leaves a pair out (e.g. MLQA-R for systems trained on it).
    """
    import pandas as pd

    from .evaluation import evaluate
    from .seed_statistics import run_values

    tables, per_query, values = [], [], []
    for system in system_list:
        for name, rset in rsets.items():
            if skip is not None and skip(system, name):
                continue
            q, c = embed_retrieval_set(system, rset, profile.candidate_text, profile.name)
            ev = evaluate(rset, q, c, bootstrap=profile.bootstrap_samples, seed=profile.seed,
                          model=system.label, training=system.training, candidate_text=profile.candidate_text,
                          system=system.system, run_seed=system.seed)
            tables.append(ev.table)
            values.append(run_values(ev, model=system.label, system=system.system, training=system.training,
                                     seed=system.seed, dataset=name))
            multi = ev.per_query[ev.per_query.setting == "multi"]
            per_query.append(pd.DataFrame({
                "model": system.label, "system": system.system, "seed": system.seed, "training": system.training,
                "dataset": name, "query_id": multi.query_id, "query_lang": multi.query_lang,
                "n_relevant": multi.n_rel, "ap": multi["map"], "rank_distance": multi.rank_distance}))
    return pd.concat(tables, ignore_index=True), pd.concat(per_query, ignore_index=True), values


def adapter_run_systems(profile) -> list[System]:
    """Every finished adapter variant of notebook 03 (``runs/<profile>/adapters-*``; notebook 04 §2).

    A per-side variant appears three times: languages never seen in training through their own
    language adapter, through the English one (``…-unseen-en``) and through none
    (``…-unseen-none``); the other variants once. Every seed of a variant is a run of one system.
    """
    from . import language_adapters as la
    from .encoders.encode import embedding_signature

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
            group = "adapters-" + r.label.replace("/", "-")
            label = group if seed is None else f"{group}-s{seed}"

            def run(texts, langs, kind, r=r, model=model, shared=manifest.get("freeze_layers", 0)):
                return la.encode_routed(model, list(texts), list(langs), kind, r,
                                        batch_tokens=profile.encode_batch_tokens, shared_layers=shared)

            systems.append(System(label, f"adapters: {r.label} (hybrid)", profile.encoder,
                                  f"{signature}|{r.key}|bt{profile.encode_batch_tokens}", run, group, seed))
    return systems


def paired_against(profile, system_list: Sequence[System], rsets: dict, *, reference: str, dataset: str,
                   metrics: tuple[str, ...] = ("map",)):
    """Every system against ``reference`` on the same queries of ``dataset``: one row per
    (system, setting, query language, metric) with both macro means, the difference, its paired
    bootstrap CI and a sign-flip p-value (:func:`xlir_utils.evaluation.paired_comparison`;
    notebook 04 §7). Embeddings come from the store, so nothing is encoded again."""
    import pandas as pd

    from .evaluation import evaluate, paired_comparison

    rset = rsets[dataset]
    by_label = {s.label: s for s in system_list}

    def per_query(system: System):
        q, c = embed_retrieval_set(system, rset, profile.candidate_text, profile.name)
        return evaluate(rset, q, c, bootstrap=0, seed=profile.seed).per_query

    ref = per_query(by_label[reference])
    rows = []
    for system in system_list:
        if system.label == reference:
            continue
        cmp = paired_comparison(per_query(system), ref, metrics=metrics, n=profile.bootstrap_samples,
                                seed=profile.seed)
        rows.append(cmp.assign(system=system.label, training=system.training, reference=reference, dataset=dataset))
    columns = ["system", "training", "reference", "dataset"]
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)
    return out[columns + [c for c in out.columns if c not in columns]]


def evaluate_tatoeba_systems(profile, system_list: Sequence[System], pairs_by_lang: dict):
    """Tatoeba for every system (notebook 04 §3, §8): tidy rows and per-query values, as
    :func:`evaluate_systems` returns them for LAReQA. Sentences go through the kit's cached encode."""
    import pandas as pd

    from .bitext import evaluate_tatoeba

    tables, values = [], []
    for s in system_list:
        table, vals = evaluate_tatoeba(s.encode, pairs_by_lang, bootstrap=profile.bootstrap_samples,
                                       seed=profile.seed, model=s.label, system=s.system, training=s.training,
                                       run_seed=s.seed, candidate_text=profile.candidate_text)
        tables.append(table)
        values += vals
    return pd.concat(tables, ignore_index=True), values
