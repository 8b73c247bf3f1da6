"""The MLM head e5-small lacks, BERT masking, the MLM loss and its training loop (notebook 03 §3).

multilingual-e5-small (and LaBSE) ship without an MLM head, so one is added: dense + GELU +
LayerNorm, then a decoder *tied to the frozen word embeddings* plus a bias (:class:`MLMHead`; as
in BERT/XLM-R). The invertible adapter of a ``seq_bn_inv`` language adapter is applied forwards
on the input embeddings and inverted (``rev=True``) before the tied decoder, as in AdapterHub's
MLM heads.
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


class MLMHead(nn.Module):
    """BERT-style MLM head: dense + GELU + LayerNorm, decoder tied to the word embeddings, bias.

    The decoder weight *is* the encoder's (frozen) word-embedding matrix; it is held
    outside the module's parameters, so ``state_dict()`` holds only the small head.
    """

    def __init__(self, word_embeddings: nn.Embedding, layer_norm_eps: float = 1e-12):
        super().__init__()
        vocab, hidden = word_embeddings.weight.shape
        self.dense = nn.Linear(hidden, hidden)
        self.act = nn.GELU()
        self.layer_norm = nn.LayerNorm(hidden, eps=layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(vocab))
        self._tied = [word_embeddings]  # a list: not registered as a sub-module
        self.digest = ""  # the recipe digest of a trained head (train_mlm_head)
        nn.init.normal_(self.dense.weight, std=0.02)
        nn.init.zeros_(self.dense.bias)

    def transform(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.layer_norm(self.act(self.dense(hidden)))

    def decode(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self._tied[0].weight.T + self.bias


def new_mlm_head(model) -> MLMHead:
    """A fresh :class:`MLMHead` tied to ``model``'s word embeddings."""
    auto = model[0].auto_model
    eps = getattr(auto.config, "layer_norm_eps", 1e-12)
    return MLMHead(auto.get_input_embeddings(), eps)


def mask_tokens(input_ids: torch.Tensor, special_mask: torch.Tensor, mask_id: int, vocab_size: int,
                generator: torch.Generator, prob: float = 0.15):
    """BERT masking: ``prob`` of the real tokens are predicted (80% <mask>, 10% random, 10% kept).

    Returns (masked input ids, labels with -100 where nothing is predicted). At least one
    token per batch is predicted.
    """
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
    ids[rand] = torch.randint(vocab_size, input_ids.shape, generator=generator)[rand]
    return ids, labels


def mlm_loss(model, head: MLMHead, texts: Sequence[str], max_seq_length: int,
             generator: torch.Generator) -> torch.Tensor:
    """MLM loss of ``texts`` through the active adapter set-up (inverse invertible adapter before decoding)."""
    auto = model[0].auto_model
    tok = model.tokenizer
    enc = tok(list(texts), padding=True, truncation=True, max_length=max_seq_length, return_tensors="pt",
              return_special_tokens_mask=True)
    special = enc.pop("special_tokens_mask").bool() | ~enc["attention_mask"].bool()
    ids, labels = mask_tokens(enc["input_ids"], special, tok.mask_token_id, len(tok), generator)
    device = next(auto.parameters()).device
    out = auto(input_ids=ids.to(device), attention_mask=enc["attention_mask"].to(device))
    where = labels != -100
    hidden = head.transform(out.last_hidden_state[where.to(device)])
    if hasattr(auto, "invertible_adapters_forward"):
        hidden = auto.invertible_adapters_forward(hidden[None], rev=True)[0]  # it wants (batch, seq, dim)
    return F.cross_entropy(head.decode(hidden), labels[where].to(device))


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


def mlm_training_loop(model, head, params, batches, lr, max_seq_length, seed, desc, show_progress) -> pd.DataFrame:
    """AdamW over ``params`` on the MLM loss of each batch (warm-up 10 %, linear decay); the log."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    steps = len(batches)
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup_decay(max(1, math.ceil(0.1 * steps)), steps))
    gen = torch.Generator().manual_seed(seed)
    log = []
    for step, batch in enumerate(tqdm(batches, desc=desc, disable=not show_progress, leave=False)):
        t0 = time.perf_counter()
        loss = mlm_loss(model, head, batch, max_seq_length, gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sched.step()
        log.append({"step": step + 1, "loss": loss.item(), "seconds": time.perf_counter() - t0})
    return pd.DataFrame(log)
