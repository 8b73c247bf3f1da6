"""The MLM head e5-small lacks, BERT masking, and the masked-language-modelling losses (notebook 03 §3).

multilingual-e5-small (and LaBSE) ship without an MLM head, so one is added: dense + GELU +
LayerNorm, then a decoder *tied to the frozen word embeddings* plus a bias (:class:`MLMHead`, as
in BERT/XLM-R). Its softmax ranges over the token ids that occur in the kit's MLM text
(``vocab``), not XLM-R's 250k pieces: a stated restriction that makes training affordable.

**A head that learned.** The head is trained on *cached* states: every text is masked once
(seeded), the frozen encoder runs once over the masked texts (no adapter, no dropout), and the
final hidden states at the masked positions are kept (:func:`masked_states`); the head then
trains for many cheap epochs on those states with early stopping on held-out text
(:func:`train_head`). A language adapter is then trained against the frozen head with fresh
masks every step (:func:`mlm_loss`); its invertible adapter is inverted (``rev=True``) on the
final hidden states before the head, as AdapterHub's MLM heads do.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..training import linear_warmup_decay
from ..training.step import autocast_for


class MLMHead(nn.Module):
    """BERT-style MLM head: dense + GELU + LayerNorm, decoder tied to the word embeddings, a bias,
    over the token ids ``vocab`` (all of them when None).

    The decoder weight *is* the encoder's (frozen) word-embedding matrix; it is held outside the
    module's parameters, so ``state_dict()`` holds only the small head and ``vocab``.
    """

    def __init__(self, word_embeddings: nn.Embedding, vocab: torch.Tensor | None = None,
                 layer_norm_eps: float = 1e-12):
        super().__init__()
        n_vocab, hidden = word_embeddings.weight.shape
        vocab = torch.arange(n_vocab) if vocab is None else torch.as_tensor(vocab, dtype=torch.long).unique()
        self.dense = nn.Linear(hidden, hidden)
        self.act = nn.GELU()
        self.layer_norm = nn.LayerNorm(hidden, eps=layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(len(vocab)))
        self.register_buffer("vocab", vocab)
        position = torch.full((n_vocab,), -100, dtype=torch.long)
        position[vocab] = torch.arange(len(vocab))
        self.register_buffer("position", position, persistent=False)
        self._tied = [word_embeddings]  # a list: not registered as a sub-module
        self.digest = ""  # the recipe digest of a trained head (train_mlm_head)
        nn.init.normal_(self.dense.weight, std=0.02)
        nn.init.zeros_(self.dense.bias)

    def transform(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.layer_norm(self.act(self.dense(hidden)))

    def decode(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over ``vocab`` (in its order)."""
        return hidden @ self._tied[0].weight[self.vocab].T + self.bias

    def targets(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Token ids as positions in ``vocab`` (-100 for ignored positions)."""
        return torch.where(token_ids >= 0, self.position[token_ids.clamp(min=0)], token_ids)


def new_mlm_head(model, vocab: torch.Tensor | None = None) -> MLMHead:
    """A fresh :class:`MLMHead` tied to ``model``'s word embeddings."""
    auto = model[0].auto_model
    eps = getattr(auto.config, "layer_norm_eps", 1e-12)
    return MLMHead(auto.get_input_embeddings(), vocab, eps)


def corpus_vocab(tokenizer, texts: Sequence[str], max_seq_length: int) -> torch.Tensor:
    """The token ids (special tokens excluded) that occur in ``texts``: the head's softmax range."""
    ids = tokenizer(list(texts), truncation=True, max_length=max_seq_length, add_special_tokens=False)["input_ids"]
    return torch.tensor(sorted({i for row in ids for i in row}), dtype=torch.long)


def mask_tokens(input_ids: torch.Tensor, special_mask: torch.Tensor, mask_id: int, random_ids: torch.Tensor,
                generator: torch.Generator, prob: float = 0.15):
    """BERT masking: ``prob`` of the real tokens are predicted (80% <mask>, 10% a random id from
    ``random_ids``, 10% kept). Returns (masked input ids, labels with -100 where nothing is
    predicted). At least one token per batch is predicted."""
    labels = input_ids.clone()
    chosen = (torch.rand(input_ids.shape, generator=generator) < prob) & ~special_mask
    if not chosen.any():
        cand = (~special_mask).nonzero()
        chosen[tuple(cand[torch.randint(len(cand), (1,), generator=generator)][0])] = True
    labels[~chosen] = -100
    ids = input_ids.clone()
    r = torch.rand(input_ids.shape, generator=generator)
    ids[chosen & (r < 0.8)] = mask_id
    rand = chosen & (r >= 0.8) & (r < 0.9)
    pick = torch.randint(len(random_ids), input_ids.shape, generator=generator)
    ids[rand] = random_ids[pick][rand]
    return ids, labels


def _masked_batch(model, head, texts, max_seq_length, generator):
    tok = model.tokenizer
    enc = tok(list(texts), padding=True, truncation=True, max_length=max_seq_length, return_tensors="pt",
              return_special_tokens_mask=True)
    special = enc.pop("special_tokens_mask").bool() | ~enc["attention_mask"].bool()
    ids, labels = mask_tokens(enc["input_ids"], special, tok.mask_token_id, head.vocab, generator)
    return ids, enc["attention_mask"], labels


def _final_states(model, ids, mask, labels, *, invertible: bool) -> tuple[torch.Tensor, torch.Tensor]:
    auto = model[0].auto_model
    device = next(auto.parameters()).device
    out = auto(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
    where = (labels != -100).to(device)
    hidden = out[where]
    if invertible and hasattr(auto, "invertible_adapters_forward"):
        hidden = auto.invertible_adapters_forward(hidden[None], rev=True)[0]  # it wants (batch, seq, dim)
    return hidden, labels[where.cpu()].to(device)


def mlm_loss(model, head: MLMHead, texts: Sequence[str], max_seq_length: int, generator: torch.Generator,
             *, invertible: bool = True) -> torch.Tensor:
    """MLM loss (nats) of ``texts`` through the active adapter set-up; with ``invertible``, the
    active language adapter's invertible adapter is inverted before the head."""
    ids, mask, labels = _masked_batch(model, head, texts, max_seq_length, generator)
    hidden, targets = _final_states(model, ids, mask, labels, invertible=invertible)
    logits = head.decode(head.transform(hidden)).float()
    return F.cross_entropy(logits, head.targets(targets))


@torch.inference_mode()
def masked_states(model, head: MLMHead, texts: Sequence[str], max_seq_length: int, seed: int,
                  batch_size: int = 64, precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """(final hidden states at the masked positions, their target positions in ``head.vocab``) for
    ``texts`` masked once with ``seed``, through the active set-up (the frozen base when none is)."""
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    hs, ts = [], []
    try:
        with autocast_for(precision, device):
            for start in range(0, len(texts), batch_size):
                ids, mask, labels = _masked_batch(model, head, texts[start:start + batch_size], max_seq_length, gen)
                h, t = _final_states(model, ids, mask, labels, invertible=False)
                hs.append(h.float().cpu())
                ts.append(head.targets(t).cpu())
    finally:
        if was_training:
            model.train()
    return torch.cat(hs), torch.cat(ts)


def head_loss(head: MLMHead, hidden: torch.Tensor, targets: torch.Tensor, batch: int = 1024,
              precision: str = "fp32") -> tuple[float, float]:
    """(mean loss in nats, accuracy) of the head on cached states."""
    total, correct = 0.0, 0
    with torch.no_grad(), autocast_for(precision, hidden.device):
        for start in range(0, len(hidden), batch):
            logits = head.decode(head.transform(hidden[start:start + batch])).float()
            t = targets[start:start + batch]
            total += F.cross_entropy(logits, t, reduction="sum").item()
            correct += int((logits.argmax(1) == t).sum())
    return total / max(1, len(hidden)), correct / max(1, len(hidden))


def train_head(head: MLMHead, train: tuple[torch.Tensor, torch.Tensor], heldout: tuple[torch.Tensor, torch.Tensor],
               *, lr: float, batch: int, max_epochs: int, patience: int, seed: int, precision: str = "fp32",
               show_progress: bool = True) -> pd.DataFrame:
    """Train ``head`` on cached (state, target) pairs, one seeded shuffle per epoch, until the
    held-out loss stops improving for ``patience`` epochs; the best epoch's weights are kept.
    Under bf16 autocast the vocabulary matrix products run in bfloat16, the loss in fp32."""
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    h, t = train
    best, best_state, since, log = math.inf, None, 0, []
    for epoch in tqdm(range(1, max_epochs + 1), desc="MLM head", disable=not show_progress, leave=False):
        t0 = time.perf_counter()
        head.train()
        order = torch.randperm(len(h), generator=gen)
        running = 0.0
        for start in range(0, len(h), batch):
            idx = order[start:start + batch]
            with autocast_for(precision, h.device):
                logits = head.decode(head.transform(h[idx]))
            loss = F.cross_entropy(logits.float(), t[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.item() * len(idx)
        head.eval()
        held_loss, held_acc = head_loss(head, *heldout, precision=precision)
        log.append({"epoch": epoch, "train_loss": running / len(h), "heldout_loss": held_loss,
                    "heldout_accuracy": held_acc, "seconds": time.perf_counter() - t0})
        if held_loss < best - 1e-4:
            best, since = held_loss, 0
            best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
        else:
            since += 1
            if since >= patience:
                break
    if best_state is not None:
        head.load_state_dict(best_state)
    return pd.DataFrame(log)


def heldout_mlm(model, head: MLMHead, texts: Sequence[str], max_seq_length: int, seed: int, *,
                invertible: bool = True, batch_size: int = 64) -> tuple[float, float]:
    """(loss, accuracy) on held-out ``texts`` with fixed masks (``seed``), through the active set-up."""
    gen = torch.Generator().manual_seed(seed)
    total, correct, n = 0.0, 0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                ids, mask, labels = _masked_batch(model, head, texts[start:start + batch_size], max_seq_length, gen)
                hidden, targets = _final_states(model, ids, mask, labels, invertible=invertible)
                logits = head.decode(head.transform(hidden)).float()
                t = head.targets(targets)
                total += F.cross_entropy(logits, t, reduction="sum").item()
                correct += int((logits.argmax(1) == t).sum())
                n += len(t)
    finally:
        if was_training:
            model.train()
    return total / max(1, n), correct / max(1, n)


def text_batches(texts: Sequence[str], batch_size: int, steps: int, seed: int) -> list[list[str]]:
    """``steps`` batches cycling through a seeded permutation of ``texts`` (re-shuffled per pass)."""
    rng = np.random.default_rng(seed)
    out, order, pos = [], rng.permutation(len(texts)), 0
    for _ in range(steps):
        batch = []
        while len(batch) < batch_size:
            if pos == len(order):
                order, pos = rng.permutation(len(texts)), 0
            batch.append(texts[order[pos]])
            pos += 1
        out.append(batch)
    return out


def mlm_training_loop(model, head, params, batches, lr, max_seq_length, seed, desc, show_progress,
                      precision: str = "fp32") -> pd.DataFrame:
    """AdamW over ``params`` on the MLM loss of each batch (warm-up 10 %, linear decay), the model
    in eval mode (the frozen base is a fixed feature extractor); the per-step log."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    steps = len(batches)
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup_decay(max(1, math.ceil(0.1 * steps)), steps))
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    model.eval()
    log = []
    for step, batch in enumerate(tqdm(batches, desc=desc, disable=not show_progress, leave=False)):
        t0 = time.perf_counter()
        with autocast_for(precision, device):
            loss = mlm_loss(model, head, batch, max_seq_length, gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sched.step()
        log.append({"step": step + 1, "loss": loss.item(), "seconds": time.perf_counter() - t0})
    return pd.DataFrame(log)
