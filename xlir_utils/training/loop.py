"""The training loop (notebook 02 §4): planned batches, one optimiser step each, checkpoints,
resume, and the run record. Adapter variants (notebook 03) run the same loop with their own
``embed_fn``.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..io_utils import atomic_replace_dir, atomic_write_csv, atomic_write_json, atomic_write_torch, sweep_stale_temps
from ..sampling import XX_KIND, BatchInfo, HybridBatchSampler
from . import distributed as D
from .loss import info_nce
from .spec import FILES_KEY, RunSpec, finished_record, record_files, run_lock
from .step import EmbedFn, autocast_for, chunked, embed_with_grad, lr_schedule, resolve_train_precision

logger = logging.getLogger(__name__)

StepHook = Callable[[int, object], None]  # (steps done, model): e.g. a dev evaluation


def planned_batches(sampler: HybridBatchSampler, n_steps: int) -> list[BatchInfo]:
    """The first ``n_steps`` batches the sampler plans, across epochs (notebook 02 §4); the first s
    batches do not depend on ``n_steps``."""
    out, epoch = [], 0
    while len(out) < n_steps:
        plan = sampler.plan(epoch)
        if not plan:
            raise ValueError("the sampler plans no batch: too few items for the batch size")
        out += plan[: n_steps - len(out)]
        epoch += 1
    return out


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


def _resume(state: dict, model, optimizer, scheduler) -> tuple[int, list]:
    named = dict(model.named_parameters())
    with torch.no_grad():
        for n, t in state["weights"].items():
            named[n].copy_(t)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state["step"], state["log"]


def _optimizer(model, cfg):
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)


def train_run(model, pairs: pd.DataFrame, spec: RunSpec, run_dir: Path, *,
              embed_fn: EmbedFn = embed_with_grad, save_fn: Callable[[object, Path], None] | None = None,
              stop_after: int | None = None, on_step: StepHook | None = None, show_progress: bool = True) -> dict:
    """Train ``model`` in place on ``pairs`` as ``spec`` says; return the run record (notebook 02 §4;
    notebook 03 §4 through :func:`xlir_utils.language_adapters.train_variant`).

    One optimiser step per planned hybrid batch (``spec.alpha``, ``spec.seed``), in-batch InfoNCE,
    a checkpoint every ``train.checkpoint_every`` steps. A finished run in ``run_dir`` with the same
    digest and intact saved files is returned without training; an interrupted or damaged one
    resumes from its checkpoint (or starts again). The run folder has one writer: while this
    trains it, another process gets :class:`~xlir_utils.errors.BusyError`.

    Under ``torchrun`` / ``accelerate launch`` every process runs this with the same arguments:
    each embeds its shard of every global batch, the embeddings are gathered across processes
    and the model is wrapped in DDP (:mod:`.distributed`); rank 0 writes checkpoints, the model
    and the record.

    Args:
        model: a ``SentenceTransformer`` whose trainable parameters are set (:func:`.set_trainable`).
        pairs: the pairs table (:data:`xlir_utils.sampling.REQUIRED_COLUMNS`, optionally ``negative``).
        spec: what determines the run (:func:`.make_spec`); its digest keys reuse and resume.
        run_dir: the run folder (``model/``, ``run.json``, ``train_log.csv``, ``checkpoint.pt``).
        embed_fn: ``embed_fn(model, texts, langs, kind)`` embeds one side with gradients (default
            :func:`.embed_with_grad`; the adapter variants route each language through its adapter).
            It runs under the step's autocast; the loss is computed in fp32.
        save_fn: ``save_fn(model, folder)`` saves the result (default: a sentence-transformers folder).
        stop_after: interrupt after that many steps, leaving the checkpoint (a simulated crash).
        on_step: ``on_step(done, model)`` after every optimiser step (the recipe study scores dev there).
        show_progress: show a progress bar.

    Returns:
        The run record (the content of ``run.json``): ``digest``, ``finished``, ``spec``,
        ``precision``, ``steps``, ``mono_share`` (the realised share of X-X batches),
        ``train_seconds``, ``final_loss_mean_last10``, ``world_size``, ``files`` (SHA-256 and
        size of each saved file); or ``{"finished": False, "step": n}`` when ``stop_after``
        interrupted it.

    Raises:
        BusyError: another process is writing this run folder.

    Example::

        from pathlib import Path

        from xlir_utils import config, data
        from xlir_utils.encoders import load_encoder
        from xlir_utils.training import make_spec, set_trainable, train_run

        cfg = config.load("smoke")
        pairs, _ = data.training_pairs(cfg, data.evaluation_sets(cfg))
        model = load_encoder(cfg.encoder)
        set_trainable(model, cfg.train.freeze_word_embeddings, cfg.train.freeze_layers)
        spec = make_spec("demo-hybrid", cfg.encoder, "hybrid", cfg.train, cfg.seed, pairs)
        record = train_run(model, pairs, spec, Path("runs/demo-hybrid"))
        record["final_loss_mean_last10"]
    """
    ctx = D.context()  # several processes under torchrun / accelerate launch (training.distributed)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    if (record := D.main_first(lambda: finished_record(run_dir, spec.digest()), ctx)) is not None:
        return record
    with run_lock(run_dir, f"run {spec.name}"):
        # another process may have finished it between the check above and taking the lock
        if (record := D.main_first(lambda: finished_record(run_dir, spec.digest()), ctx)) is not None:
            return record
        return _train(model, pairs, spec, run_dir, ctx, embed_fn=embed_fn, save_fn=save_fn, stop_after=stop_after,
                      on_step=on_step, show_progress=show_progress)


def _train(model, pairs: pd.DataFrame, spec: RunSpec, run_dir: Path, ctx: D.DistContext, *, embed_fn: EmbedFn,
           save_fn, stop_after: int | None, on_step: StepHook | None, show_progress: bool) -> dict:
    """The body of :func:`train_run`, under the run folder's lock."""
    cfg = spec.train
    digest = spec.digest()
    record_path = run_dir / "run.json"
    torch.manual_seed(spec.seed)
    device = next(model.parameters()).device
    precision = resolve_train_precision(cfg.precision, device)
    sampler = HybridBatchSampler(pairs, cfg.batch_size, spec.alpha, seed=spec.seed)
    batches = planned_batches(sampler, cfg.steps)
    optimizer = _optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(cfg))
    ckpt_path = run_dir / "checkpoint.pt"
    if ctx.is_main:
        sweep_stale_temps(run_dir)
    D.barrier(ctx)
    start, log = 0, []
    state = _load_checkpoint(ckpt_path)
    if state is not None and state["digest"] == digest:
        start, log = _resume(state, model, optimizer, scheduler)
    model.train()
    sides = D.wrap(D.SidesForward(model, embed_fn), ctx)  # DDP for several processes
    q_col, p_col = pairs["query"].to_numpy(), pairs["passage"].to_numpy()
    ql_col, pl_col = pairs["query_lang"].to_numpy(), pairs["passage_lang"].to_numpy()
    n_col = pairs["negative"].to_numpy() if "negative" in pairs.columns else None
    bar = tqdm(total=cfg.steps, initial=start, desc=f"train {spec.name}", disable=not show_progress)
    for step in range(start, cfg.steps):
        info = batches[step]  # the same global batch on every process
        idx = D.shard(info.indices, ctx)  # this process's rows of it
        t0 = time.perf_counter()
        todo = [(list(q_col[idx]), list(ql_col[idx]), "query"), (list(p_col[idx]), list(pl_col[idx]), "passage")]
        if n_col is not None:
            todo.append((list(n_col[idx]), list(pl_col[idx]), "passage"))
        with autocast_for(precision, device), chunked(cfg.chunk_rows):
            embedded = [D.gather_rows(x, ctx) for x in sides(todo)]  # in-batch negatives span the global batch
        q, p, hard = embedded[0], embedded[1], embedded[2] if n_col is not None else None
        loss = info_nce(q, p, cfg.temperature, hard)  # fp32, the global batch's loss on every process
        optimizer.zero_grad(set_to_none=True)
        (loss * ctx.world).backward()  # DDP averages over processes: the global loss's exact gradient
        optimizer.step()
        scheduler.step()
        log.append({"step": step + 1, "epoch": info.epoch, "kind": info.kind, "lang": info.lang or "mixed",
                    "loss": loss.item(), "lr": scheduler.get_last_lr()[0],
                    "seconds": time.perf_counter() - t0})
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", kind=info.kind)
        done = step + 1
        if on_step is not None:
            on_step(done, model)
        if (done % cfg.checkpoint_every == 0 or done == cfg.steps or done == stop_after) and ctx.is_main:
            _save_checkpoint(ckpt_path, model, optimizer, scheduler, done, log, digest)
        if stop_after is not None and done >= stop_after and done < cfg.steps:
            bar.close()
            D.barrier(ctx)
            return {"finished": False, "step": done}
    bar.close()
    model.eval()
    if not ctx.is_main:  # rank 0 writes the model and the record; the others read the record
        D.barrier(ctx)
        return json.loads(record_path.read_text())
    (save_fn or (lambda m, folder: atomic_replace_dir(folder, lambda tmp: m.save(str(tmp)))))(model, run_dir / "model")
    log_df = pd.DataFrame(log)
    atomic_write_csv(log_df, run_dir / "train_log.csv")
    # "mono_share": the realised share of X-X batches, under the key every stored run record has
    record = {"digest": digest, "finished": True, "spec": asdict(spec), "precision": precision,
              "steps": cfg.steps, "mono_share": float((log_df.kind == XX_KIND).mean()),
              "train_seconds": float(log_df.seconds.sum()),
              "final_loss_mean_last10": float(log_df.loss.tail(10).mean())}
    record["world_size"] = ctx.world
    record[FILES_KEY] = record_files(run_dir)  # checked before the run is reused
    atomic_write_json(record, record_path)
    ckpt_path.unlink(missing_ok=True)
    D.barrier(ctx)
    return json.loads(record_path.read_text())  # the same form a reused run returns
