"""The MLM head e5-small lacks, BERT masking, and the masked-language-modelling losses (notebook 03 §3).

multilingual-e5-small (and LaBSE) ship without an MLM head, so one is added: dense + GELU +
LayerNorm, then a decoder *tied to the frozen word embeddings* plus a bias (:class:`MLMHead`, as
in BERT/XLM-R). Its softmax ranges over the token ids that occur in the kit's MLM text
(``vocab``), not XLM-R's 250k pieces: a stated restriction that makes training affordable.

A head reads the states of one layer (``layer``; the last by default) and may put one
transformer layer of its own (:class:`ContextBlock`) between those states and the transform.
Which of these learns best is measured on held-out text (:mod:`.head_study`).

**A head trained on cached states.** Every text is masked (seeded), the frozen encoder runs once
over the masked texts (no adapter, no dropout), and the states the head reads are kept
(:func:`.head_study.candidate_states`); the head then trains for many cheap epochs on them with early stopping
on held-out text (:func:`train_head`). A language adapter is then trained against the frozen
head with fresh masks every step (:func:`mlm_loss`); its invertible adapter is inverted
(``rev=True``) on the states before the head, as AdapterHub's MLM heads do.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..encoders.prefix import lower_layers_only
from ..training import linear_warmup_decay
from ..training.step import autocast_for


class ContextBlock(nn.Module):
    """One post-LayerNorm transformer layer over frozen states, evaluated at the masked positions
    only: keys and values come from every real position, the output and feed-forward part run
    where a token is predicted (what an MLM head needs, at a fraction of a full layer's cost)."""

    def __init__(self, hidden: int, heads: int, eps: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.norm1 = nn.LayerNorm(hidden, eps=eps)
        self.ffn = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden))
        self.norm2 = nn.LayerNorm(hidden, eps=eps)
        for module in (self.qkv, self.out, self.ffn[0], self.ffn[2]):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def forward(self, states: torch.Tensor, mask: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        """``states`` (batch, seq, hidden), ``mask`` (batch, seq; 1 = real token), ``where`` (batch,
        seq; True = predicted): the block's output at the ``where`` positions, (n, hidden)."""
        b, t, h = states.shape
        q, k, v = self.qkv(states).view(b, t, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :].bool())
        context = context.transpose(1, 2).reshape(b, t, h)[where]
        x = self.norm1(states[where] + self.out(context))
        return self.norm2(x + self.ffn(x))


class MLMHead(nn.Module):
    """BERT-style MLM head: dense + GELU + LayerNorm, decoder tied to the word embeddings, a bias,
    over the token ids ``vocab`` (all of them when None).

    ``layer``: the hidden state it reads (1 = after the first transformer layer; -1 = the last).
    ``context_layers``: 1 puts a :class:`ContextBlock` of its own before the transform (0: none).
    The decoder weight *is* the encoder's (frozen) word-embedding matrix; it is held outside the
    module's parameters, so ``state_dict()`` holds only the small head, ``vocab`` and ``layer``.
    """

    def __init__(self, word_embeddings: nn.Embedding, vocab: torch.Tensor | None = None,
                 layer_norm_eps: float = 1e-12, *, layer: int = -1, context_layers: int = 0, heads: int = 12):
        super().__init__()
        if context_layers not in (0, 1):
            raise ValueError(f"context_layers must be 0 or 1, got {context_layers!r}")
        n_vocab, hidden = word_embeddings.weight.shape
        vocab = torch.arange(n_vocab) if vocab is None else torch.as_tensor(vocab, dtype=torch.long).unique()
        self.context = nn.ModuleList([ContextBlock(hidden, heads, layer_norm_eps)] * context_layers)
        self.dense = nn.Linear(hidden, hidden)
        self.act = nn.GELU()
        self.layer_norm = nn.LayerNorm(hidden, eps=layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(len(vocab)))
        self.register_buffer("vocab", vocab)
        self.register_buffer("source_layer", torch.tensor(int(layer)))
        position = torch.full((n_vocab,), -100, dtype=torch.long)
        position[vocab] = torch.arange(len(vocab))
        self.register_buffer("position", position, persistent=False)
        self._tied = [word_embeddings]  # a list: not registered as a sub-module
        self.digest = ""  # the recipe digest of a trained head (train_mlm_head)
        nn.init.normal_(self.dense.weight, std=0.02)
        nn.init.zeros_(self.dense.bias)

    @property
    def layer(self) -> int:
        return int(self.source_layer)

    def reads_layer(self, n_layers: int) -> int:
        """The number of transformer layers the encoder runs for this head (``layer``, or all)."""
        return n_layers if self.layer < 0 else min(self.layer, n_layers)

    def transform(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.layer_norm(self.act(self.dense(hidden)))

    def decode(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over ``vocab`` (in its order)."""
        return hidden @ self._tied[0].weight[self.vocab].T + self.bias

    def forward(self, states: torch.Tensor, mask: torch.Tensor | None = None,
                where: torch.Tensor | None = None) -> torch.Tensor:
        """Logits at the predicted positions: ``states`` (n, hidden) already at those positions, or
        (batch, seq, hidden) with the attention ``mask`` and the predicted positions ``where``."""
        if where is not None:
            states = self.context[0](states, mask, where) if len(self.context) else states[where]
        elif len(self.context):
            raise ValueError("a head with a context layer needs whole sequences (mask and where)")
        return self.decode(self.transform(states))

    def targets(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Token ids as positions in ``vocab`` (-100 for ignored positions)."""
        return torch.where(token_ids >= 0, self.position[token_ids.clamp(min=0)], token_ids)


def new_mlm_head(model, vocab: torch.Tensor | None = None, *, layer: int = -1, context_layers: int = 0) -> MLMHead:
    """A fresh :class:`MLMHead` tied to ``model``'s word embeddings, reading hidden state ``layer``."""
    auto = model[0].auto_model
    eps = getattr(auto.config, "layer_norm_eps", 1e-12)
    heads = getattr(auto.config, "num_attention_heads", 12)
    return MLMHead(auto.get_input_embeddings(), vocab, eps, layer=layer, context_layers=context_layers, heads=heads)


def head_from_state(model, state: dict) -> MLMHead:
    """Rebuild a saved head (its ``state_dict``) tied to ``model``'s word embeddings."""
    layer = int(state.get("source_layer", torch.tensor(-1)))
    context = 1 if any(k.startswith("context.0.") for k in state) else 0
    head = new_mlm_head(model, state["vocab"], layer=layer, context_layers=context)
    head.load_state_dict(state)
    return head


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


def _head_inputs(model, head: MLMHead, ids, mask, labels, *, invertible: bool):
    """Run the encoder as far as ``head`` reads and return (what the head takes, the target token
    ids): the states at the predicted positions, or for a context head (states, mask, where)."""
    auto = model[0].auto_model
    device = next(auto.parameters()).device
    n_layers = auto.config.num_hidden_layers
    upto = head.reads_layer(n_layers)
    with lower_layers_only(model, upto) if upto < n_layers else nullcontext():
        out = auto(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
    if invertible and hasattr(auto, "invertible_adapters_forward"):
        out = auto.invertible_adapters_forward(out, rev=True)  # a per-token map
    where = (labels != -100).to(device)
    targets = labels.to(device)[where]
    if len(head.context):
        return (out, mask.to(device), where), targets
    return (out[where],), targets


def mlm_loss(model, head: MLMHead, texts: Sequence[str], max_seq_length: int, generator: torch.Generator,
             *, invertible: bool = True) -> torch.Tensor:
    """MLM loss (nats) of ``texts`` through the active adapter set-up; with ``invertible``, the
    active language adapter's invertible adapter is inverted before the head."""
    ids, mask, labels = _masked_batch(model, head, texts, max_seq_length, generator)
    inputs, targets = _head_inputs(model, head, ids, mask, labels, invertible=invertible)
    return F.cross_entropy(head(*inputs).float(), head.targets(targets))


@dataclass
class CachedStates:
    """What a head reads, computed once: ``items`` of (inputs, target positions in ``vocab``), one
    per encoded batch; inputs are the states at the predicted positions, or (states, mask, where)
    for a context head (states kept in bfloat16 to halve the memory)."""

    items: list

    def __len__(self) -> int:
        """Predicted positions."""
        return sum(len(t) for _, t in self.items)

    @property
    def positional(self) -> bool:
        """Whether the items hold states at predicted positions only (a head without context layers)."""
        return bool(self.items) and len(self.items[0][0]) == 1

    def _positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every predicted position's state and target, concatenated (positional items)."""
        return torch.cat([x[0] for x, _ in self.items]), torch.cat([t for _, t in self.items])

    def batches(self, size: int, generator: torch.Generator | None = None) -> Iterator[tuple[tuple, torch.Tensor]]:
        """Training batches: ``size`` positions at a time for a position head (shuffled with
        ``generator``), whole encoded batches (in shuffled order) for a context head."""
        if self.positional:
            h, t = self._positions()
            order = torch.randperm(len(h), generator=generator) if generator is not None else torch.arange(len(h))
            for start in range(0, len(h), size):
                idx = order[start:start + size]
                yield (h[idx],), t[idx]
            return
        order = torch.randperm(len(self.items), generator=generator).tolist() if generator is not None \
            else range(len(self.items))
        for i in order:
            (states, mask, where), t = self.items[i]
            yield (states.float(), mask, where), t

    def sample(self, n: int, seed: int) -> "CachedStates":
        """At most ``n`` predicted positions, a seeded sample (position heads; a context head's
        batches are kept whole until ``n`` positions are reached)."""
        if len(self) <= n:
            return self
        if self.positional:
            h, t = self._positions()
            keep = torch.randperm(len(h), generator=torch.Generator().manual_seed(seed))[:n]
            return CachedStates([((h[keep],), t[keep])])
        order = torch.randperm(len(self.items), generator=torch.Generator().manual_seed(seed)).tolist()
        kept, total = [], 0
        for i in order:
            if total >= n:
                break
            kept.append(self.items[i])
            total += len(self.items[i][1])
        return CachedStates(kept)

    @staticmethod
    def concat(parts: Sequence["CachedStates"]) -> "CachedStates":
        return CachedStates([item for part in parts for item in part.items])


def head_loss(head: MLMHead, states: CachedStates, batch: int = 1024, precision: str = "fp32") -> tuple[float, float]:
    """(mean loss in nats, accuracy) of the head on cached states."""
    total, correct, n = 0.0, 0, 0
    with torch.no_grad(), autocast_for(precision, torch.device("cpu")):
        for inputs, t in states.batches(batch):
            logits = head(*inputs).float()
            total += F.cross_entropy(logits, t, reduction="sum").item()
            correct += int((logits.argmax(1) == t).sum())
            n += len(t)
    return total / max(1, n), correct / max(1, n)


def train_head(head: MLMHead, train: CachedStates, heldout: CachedStates, *, lr: float, batch: int, max_epochs: int,
               patience: int, seed: int, precision: str = "fp32", max_seconds: float | None = None,
               show_progress: bool = True) -> pd.DataFrame:
    """Train ``head`` on cached states, one seeded shuffle per epoch, until the held-out loss stops
    improving for ``patience`` epochs, ``max_epochs`` are done or an epoch ends past
    ``max_seconds``; the best epoch's weights are kept. Under bf16 autocast the vocabulary matrix
    products run in bfloat16, the loss in fp32."""
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    best, best_state, since, log, started = math.inf, None, 0, [], time.perf_counter()
    for epoch in tqdm(range(1, max_epochs + 1), desc="MLM head", disable=not show_progress, leave=False):
        t0 = time.perf_counter()
        head.train()
        running, seen = 0.0, 0
        for inputs, t in train.batches(batch, gen):
            with autocast_for(precision, torch.device("cpu")):
                logits = head(*inputs)
            loss = F.cross_entropy(logits.float(), t)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.item() * len(t)
            seen += len(t)
        head.eval()
        held_loss, held_acc = head_loss(head, heldout, precision=precision)
        log.append({"epoch": epoch, "train_loss": running / max(1, seen), "heldout_loss": held_loss,
                    "heldout_accuracy": held_acc, "seconds": time.perf_counter() - t0})
        if held_loss < best - 1e-4:
            best, since = held_loss, 0
            best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
        else:
            since += 1
            if since >= patience:
                break
        if max_seconds is not None and time.perf_counter() - started > max_seconds:
            break
    if best_state is not None:
        head.load_state_dict(best_state)
    return pd.DataFrame(log)


@torch.inference_mode()
def text_losses(model, head: MLMHead, texts: Sequence[str], max_seq_length: int, seed: int, *,
                invertible: bool = True, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per held-out text (fixed masks from ``seed``), through the active set-up: (summed MLM loss
    in nats, correctly predicted tokens, predicted tokens). The masks do not depend on the set-up,
    so two set-ups are compared on the same tokens (notebook 03 §3)."""
    gen = torch.Generator().manual_seed(seed)
    sums, correct, counts = [], [], []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(texts), batch_size):
            ids, mask, labels = _masked_batch(model, head, texts[start:start + batch_size], max_seq_length, gen)
            row = (labels != -100).nonzero()[:, 0]  # the text of each predicted token, in _head_inputs' order
            inputs, targets = _head_inputs(model, head, ids, mask, labels, invertible=invertible)
            logits = head(*inputs).float()
            t = head.targets(targets)
            loss = F.cross_entropy(logits, t, reduction="none").cpu()
            hit = (logits.argmax(1) == t).cpu().to(torch.float32)
            sums.append(torch.zeros(len(ids), dtype=torch.float64).index_add_(0, row, loss.double()).numpy())
            correct.append(torch.zeros(len(ids)).index_add_(0, row, hit).numpy())
            counts.append(torch.bincount(row, minlength=len(ids)).numpy())
    finally:
        if was_training:
            model.train()
    if not sums:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64)
    return np.concatenate(sums), np.concatenate(correct), np.concatenate(counts)


def heldout_mlm(model, head: MLMHead, texts: Sequence[str], max_seq_length: int, seed: int, *,
                invertible: bool = True, batch_size: int = 64) -> tuple[float, float]:
    """(loss, accuracy) on held-out ``texts`` with fixed masks (``seed``), through the active set-up."""
    sums, correct, counts = text_losses(model, head, texts, max_seq_length, seed, invertible=invertible,
                                        batch_size=batch_size)
    n = max(1, int(counts.sum()))
    return float(sums.sum()) / n, float(correct.sum()) / n


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
