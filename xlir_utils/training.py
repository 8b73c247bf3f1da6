"""Contrastive fine-tuning with X-X / X-Y / hybrid batches (notebook 02), resumable.

A plain loop, so that every step is visible: the sampler picks rows of the pairs table,
each side is embedded (queries with the ``query`` prompt, passages with ``passage``), and
the in-batch InfoNCE loss scores each query against every passage of the batch.

Deviation from the paper (recorded in the README): the printed loss has no temperature and
leaves the other queries' positives out of the denominator; we use the usual form, every
in-batch passage in the denominator and temperature τ = 0.05 (sentence-transformers'
``MultipleNegativesRankingLoss`` with scale 20).

Runs live in ``runs/<profile>/<name>/``: ``model/`` (a sentence-transformers folder),
``run.json`` (what produced it), ``train_log.csv`` (loss and batch kind per step) and, while
training, ``checkpoint.pt`` (trainable weights, optimiser, scheduler, RNG), written
atomically. A finished run with the same recipe is reused; an interrupted one resumes.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .config import TrainConfig
from .io_utils import (atomic_replace_dir, atomic_write_csv, atomic_write_json, atomic_write_torch, json_digest,
                       recover_dir, sweep_stale_temps)
from .sampling import HybridBatchSampler, sampling_alpha

logger = logging.getLogger(__name__)

EmbedFn = Callable[[object, Sequence[str], Sequence[str], str], torch.Tensor]


def info_nce(q: torch.Tensor, p: torch.Tensor, temperature: float,
             hard_negatives: torch.Tensor | None = None) -> torch.Tensor:
    """In-batch contrastive loss: query i's positive is passage i; all passages are negatives
    (notebook 02 §3)."""
    q, p = F.normalize(q, dim=-1), F.normalize(p, dim=-1)
    logits = q @ p.T
    if hard_negatives is not None:
        logits = torch.cat([logits, q @ F.normalize(hard_negatives, dim=-1).T], dim=1)
    labels = torch.arange(q.shape[0], device=q.device)
    return F.cross_entropy(logits / temperature, labels)


def embed_with_grad(model, texts: Sequence[str], langs: Sequence[str], kind: str) -> torch.Tensor:
    """Embed one side of a training batch *with gradients*: a torch tensor, not normalised (the
    loss normalises). The prompt of ``kind`` is prepended; ``langs`` is unused here (adapter
    routing uses it). For evaluation use :func:`xlir_utils.encoders.encode` (numpy, normalised,
    cached)."""
    prefix = (getattr(model, "prompts", None) or {}).get(kind, "")
    features = model.tokenize([prefix + t for t in texts])
    device = next(model.parameters()).device
    features = {k: v.to(device) if torch.is_tensor(v) else v for k, v in features.items()}
    return model(features)["sentence_embedding"]


def set_trainable(model, freeze_word_embeddings: bool) -> int:
    """Full fine-tuning, optionally with frozen word embeddings; returns the trainable count."""
    for param in model.parameters():
        param.requires_grad_(True)
    if freeze_word_embeddings:
        model[0].auto_model.get_input_embeddings().weight.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass(frozen=True)
class RunSpec:
    """What determines a training run (its hash keys the run folder's reuse)."""

    name: str
    base_model: str
    sampling: str  # "X-X" | "X-Y" | "hybrid"
    alpha: float
    seed: int
    train: TrainConfig
    n_pairs: int
    pairs_digest: str
    extra: str = ""  # e.g. an adapter set-up

    def digest(self) -> str:
        return json_digest(asdict(self))


_DIGEST_CHUNK = 100_000


def pairs_digest(pairs: pd.DataFrame) -> str:
    """A content hash of the pairs table (row order included)."""
    h = hashlib.sha256()
    for col in ("question_id", "query_lang", "passage_lang", "query", "passage", "negative"):
        if col not in pairs.columns:  # "negative" only where the data brings hard negatives
            continue
        values = pairs[col].astype(str).to_numpy()
        # the digest of "\x1f".join(values), fed in chunks (millions of rows in the paper profile)
        for start in range(0, len(values), _DIGEST_CHUNK):
            if start:
                h.update(b"\x1f")
            h.update("\x1f".join(values[start : start + _DIGEST_CHUNK]).encode())
    return h.hexdigest()[:16]


def finished_record(run_dir: Path, digest: str) -> dict | None:
    """The record of a finished run with this recipe digest, else None (a model folder swap
    that a kill interrupted is finished or undone first)."""
    recover_dir(run_dir / "model")
    try:
        record = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("digest") == digest and record.get("finished") else None


def planned_batches(sampler: HybridBatchSampler, n_steps: int) -> list:
    """The first ``n_steps`` batches (BatchInfo) the sampler plans, across epochs."""
    out, epoch = [], 0
    while len(out) < n_steps:
        plan = sampler.plan(epoch)
        if not plan:
            raise ValueError("the sampler plans no batch: too few items for the batch size")
        out += plan[: n_steps - len(out)]
        epoch += 1
    return out


def linear_warmup_decay(warmup: int, total: int) -> Callable[[int], float]:
    """The learning-rate factor of step ``step``: linear warm-up over ``warmup`` steps, then linear
    decay to 0 at ``total`` (for ``LambdaLR``; the MLM loops of notebook 03 use it too)."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


def _trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _save_checkpoint(path: Path, model, optimizer, scheduler, step: int, log: list[dict], digest: str) -> None:
    atomic_write_torch({"step": step, "digest": digest, "weights": _trainable_state(model),
                        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "rng": torch.get_rng_state(),
                        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                        "log": log}, path)


def _load_checkpoint(path: Path) -> dict | None:
    """A checkpoint's contents, or None if there is none; a truncated or damaged one is removed
    with a warning (training then starts again from step 0, which gives the same result)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, weights_only=False, map_location="cpu")
        if not isinstance(state, dict) or not {"step", "digest", "weights", "optimizer"} <= set(state):
            raise ValueError("not a checkpoint of this kit")
        return state
    except Exception as exc:  # noqa: BLE001 - truncated zip, unpickling error, foreign file
        logger.warning("checkpoint %s is unreadable (%s: %s): removed; training starts again from step 0",
                       path, type(exc).__name__, exc)
        path.unlink(missing_ok=True)
        return None


def _save_model_atomically(model, folder: Path) -> None:
    atomic_replace_dir(folder, lambda tmp: model.save(str(tmp)))


def train_run(model, pairs: pd.DataFrame, spec: RunSpec, run_dir: Path, *,
              embed_fn: EmbedFn = embed_with_grad, save_fn: Callable[[object, Path], None] | None = None,
              stop_after: int | None = None, show_progress: bool = True) -> dict:
    """Train ``model`` in place on ``pairs`` as ``spec`` says; return the run record.

    ``embed_fn(model, texts, langs, kind)`` embeds one side (the adapter variants route
    each language through its own adapter). ``save_fn(model, folder)`` saves the result
    (default: the sentence-transformers folder). ``stop_after`` interrupts after that many
    steps (tests use it to simulate a crash; the checkpoint is left for resuming).
    """
    cfg = spec.train
    run_dir.mkdir(parents=True, exist_ok=True)
    digest = spec.digest()
    record_path = run_dir / "run.json"
    if (record := finished_record(run_dir, digest)) is not None:
        return record
    torch.manual_seed(spec.seed)
    sampler = HybridBatchSampler(pairs, cfg.batch_size, spec.alpha, seed=spec.seed)
    batches = planned_batches(sampler, cfg.steps)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    warmup = math.ceil(cfg.warmup_ratio * cfg.steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup_decay(warmup, cfg.steps))
    ckpt_path = run_dir / "checkpoint.pt"
    sweep_stale_temps(run_dir)
    start, log = 0, []
    state = _load_checkpoint(ckpt_path)
    if state is not None and state["digest"] == digest:
        named = dict(model.named_parameters())
        with torch.no_grad():
            for n, t in state["weights"].items():
                named[n].copy_(t)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        start, log = state["step"], state["log"]
    model.train()
    q_col, p_col = pairs["query"].to_numpy(), pairs["passage"].to_numpy()
    ql_col, pl_col = pairs["query_lang"].to_numpy(), pairs["passage_lang"].to_numpy()
    n_col = pairs["negative"].to_numpy() if "negative" in pairs.columns else None
    bar = tqdm(total=cfg.steps, initial=start, desc=f"train {spec.name}", disable=not show_progress)
    for step in range(start, cfg.steps):
        info = batches[step]
        idx = np.asarray(info.indices)
        t0 = time.perf_counter()
        q = embed_fn(model, list(q_col[idx]), list(ql_col[idx]), "query")
        p = embed_fn(model, list(p_col[idx]), list(pl_col[idx]), "passage")
        hard = embed_fn(model, list(n_col[idx]), list(pl_col[idx]), "passage") if n_col is not None else None
        loss = info_nce(q, p, cfg.temperature, hard)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        log.append({"step": step + 1, "epoch": info.epoch, "kind": info.kind, "lang": info.lang or "mixed",
                    "loss": loss.item(), "lr": scheduler.get_last_lr()[0],
                    "seconds": time.perf_counter() - t0})
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", kind=info.kind)
        done = step + 1
        if done % cfg.checkpoint_every == 0 or done == cfg.steps or done == stop_after:
            _save_checkpoint(ckpt_path, model, optimizer, scheduler, done, log, digest)
        if stop_after is not None and done >= stop_after and done < cfg.steps:
            bar.close()
            return {"finished": False, "step": done}
    bar.close()
    model.eval()
    (save_fn or _save_model_atomically)(model, run_dir / "model")
    log_df = pd.DataFrame(log)
    atomic_write_csv(log_df, run_dir / "train_log.csv")
    record = {"digest": digest, "finished": True, "spec": asdict(spec),
              "steps": cfg.steps, "mono_share": float((log_df.kind == "mono").mean()),
              "train_seconds": float(log_df.seconds.sum()),
              "final_loss_mean_last10": float(log_df.loss.tail(10).mean())}
    atomic_write_json(record, record_path)
    ckpt_path.unlink(missing_ok=True)
    return json.loads(record_path.read_text())  # the same form a reused run returns


SAMPLINGS = ("X-X", "X-Y", "hybrid")


def run_name(sampling: str, alpha: float | None = None) -> str:
    """Folder name of a run: ``full-X-X``, ``full-X-Y``, ``full-hybrid`` (``-a0.25`` for sweeps)."""
    name = f"full-{sampling}"
    return name if alpha is None else f"{name}-a{alpha:g}"


def canonical_sampling(sampling: str, alpha: float | None, default_alpha: float) -> tuple[str, float | None]:
    """The run a (sampling, alpha) request is: hybrid at alpha 1, 0 or the profile's alpha *is*
    the X-X, X-Y or hybrid run (same batches, same seed), so a sweep point reuses it."""
    if sampling != "hybrid" or alpha is None:
        return sampling, alpha
    a = sampling_alpha("hybrid", alpha)
    if a == 1.0:
        return "X-X", None
    if a == 0.0:
        return "X-Y", None
    if a == float(default_alpha):
        return "hybrid", None
    return sampling, a


def make_spec(name: str, base_model: str, sampling: str, cfg: TrainConfig, seed: int,
              pairs: pd.DataFrame, alpha: float | None = None, extra: str = "") -> RunSpec:
    """The :class:`RunSpec` of one run (``alpha`` for hybrid defaults to the profile's)."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"Unknown sampling {sampling!r}; choose one of {SAMPLINGS}.")
    a = sampling_alpha(sampling, cfg.alpha if alpha is None else alpha)
    return RunSpec(name, base_model, sampling, a, seed, cfg, len(pairs), pairs_digest(pairs), extra)


def finished_runs(runs_root: Path) -> list[Path]:
    """Run folders holding a finished model, sorted by name."""
    return sorted(p for p in runs_root.glob("*") if (p / "run.json").is_file()
                  and json.loads((p / "run.json").read_text()).get("finished"))


def read_train_logs(run_dirs: Sequence[Path]) -> pd.DataFrame:
    """The ``train_log.csv`` of several runs in one table, with a ``run`` column (the folder name).

    Notebooks 02 §4 and 03 §4 store it in ``results/`` so that ``make figures`` redraws the loss curves.
    """
    return pd.concat([pd.read_csv(d / "train_log.csv").assign(run=d.name) for d in run_dirs], ignore_index=True)


def train_full(profile, sampling: str, pairs: pd.DataFrame, *, alpha: float | None = None,
               runs_root: Path | None = None, show_progress: bool = True) -> dict:
    """Full fine-tuning of the profile's base encoder with one sampling strategy (notebook 02 §4-5).

    Reuses a finished run with the same recipe; resumes an interrupted one. A hybrid ``alpha`` of
    1, 0 or the profile's alpha is the X-X, X-Y or hybrid run itself (:func:`canonical_sampling`).
    """
    from . import paths
    from .encoders.registry import load_encoder

    sampling, alpha = canonical_sampling(sampling, alpha, profile.train.alpha)
    name = run_name(sampling, alpha)
    run_dir = (runs_root or paths.runs_dir(profile.name)) / name
    spec = make_spec(name, profile.encoder, sampling, profile.train, profile.seed, pairs, alpha)
    if (record := finished_record(run_dir, spec.digest())) is not None:
        return record  # skip loading the model
    model = load_encoder(profile.encoder, profile)
    model.max_seq_length = profile.train.max_seq_length
    set_trainable(model, profile.train.freeze_word_embeddings)
    return train_run(model, pairs, spec, run_dir, show_progress=show_progress)
