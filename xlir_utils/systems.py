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

    label: str  # unique, e.g. "e5-small-offline", "full-hybrid", "adapters-per-side"
    training: str  # "zero-shot", "X-X", "X-Y", "hybrid", "adapters: per-side", ...
    model_name: str  # the base model
    fingerprint: str  # what produced the embeddings: model, precision, batch budget (keys the stored embeddings)
    encode: EncodeFn


def encoder_system(label: str, training: str, model, model_name: str, batch_tokens: int) -> System:
    """A system from a plain sentence-transformers model (no routing)."""
    from .encoders.encode import embedding_signature, encode

    def run(texts, langs, kind):
        return encode(model, list(texts), kind, batch_tokens=batch_tokens)

    return System(label, training, model_name, f"{embedding_signature(model)}|bt{batch_tokens}", run)


def baseline_systems(profile) -> list[System]:
    """The profile's zero-shot baselines (notebook 04 §2; hub models fail fast offline, with the fix)."""
    from .encoders.registry import load_encoder

    return [encoder_system(name, "zero-shot", load_encoder(name, profile), name, profile.encode_batch_tokens)
            for name in profile.baselines]


def full_run_systems(profile) -> list[System]:
    """Every finished full fine-tuning run (``runs/<profile>/full-*``; notebook 04 §2)."""
    from .encoders.registry import load_encoder
    from .training import finished_runs

    systems = []
    for run_dir in finished_runs(paths.runs_dir(profile.name)):
        if not run_dir.name.startswith("full-"):
            continue
        record = json.loads((run_dir / "run.json").read_text())
        sampling = record["spec"]["sampling"]
        alpha = record["spec"]["alpha"]
        training = sampling if run_dir.name == f"full-{sampling}" else f"{sampling} (alpha={alpha:g})"
        model = load_encoder(str(run_dir / "model"), profile)
        systems.append(encoder_system(run_dir.name, training, model, record["spec"]["base_model"],
                                      profile.encode_batch_tokens))
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

    Returns (tidy table, per-query multilingual rows). ``skip(system, dataset)`` leaves a
    pair out (e.g. MLQA-R for systems trained on it).
    """
    import pandas as pd

    from .evaluation import evaluate

    tables, per_query = [], []
    for system in system_list:
        for name, rset in rsets.items():
            if skip is not None and skip(system, name):
                continue
            q, c = embed_retrieval_set(system, rset, profile.candidate_text, profile.name)
            ev = evaluate(rset, q, c, bootstrap=profile.bootstrap_samples, seed=profile.seed,
                          model=system.label, training=system.training, candidate_text=profile.candidate_text)
            tables.append(ev.table)
            multi = ev.per_query[ev.per_query.setting == "multi"]
            per_query.append(pd.DataFrame({
                "model": system.label, "training": system.training, "dataset": name, "query_id": multi.query_id,
                "query_lang": multi.query_lang,
                "n_relevant": multi.n_rel, "ap": multi["map"], "rank_distance": multi.rank_distance}))
    return pd.concat(tables, ignore_index=True), pd.concat(per_query, ignore_index=True)


def adapter_run_systems(profile) -> list[System]:
    """Every finished adapter variant of notebook 03 (``runs/<profile>/adapters-*``; notebook 04 §2).

    The per-side variant appears twice: never-seen languages through their own language
    adapter (``adapters-per-side``) and through the English one (``…/unseen-en``).
    """
    from . import language_adapters as la
    from .encoders.encode import embedding_signature

    systems = []
    for run_dir in la.variant_run_dirs(profile.name):
        model, routing = la.load_variant(run_dir, profile=profile)
        signature = embedding_signature(model)  # the routings below share the model
        routings = [routing] + ([routing.with_unseen("en")] if routing.variant == "per-side" else [])
        for r in routings:
            label = "adapters-" + r.label.replace("/", "-")

            def run(texts, langs, kind, r=r, model=model):
                return la.encode_routed(model, list(texts), list(langs), kind, r,
                                        batch_tokens=profile.encode_batch_tokens)

            systems.append(System(label, f"adapters: {r.label} (hybrid)", profile.encoder,
                                  f"{signature}|{r.key}|bt{profile.encode_batch_tokens}", run))
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
