"""Training on top of a frozen prefix: the lowest k layers computed once per training text.

When everything below layer k is frozen *and* runs without dropout, its output for a training
text never changes, so it is computed once (:class:`PrefixCache`) and every step runs only the
upper layers, forward and backward. The adapter variants of notebook 03 train this way: their
base model is frozen, adapters live in layers k and above, and the frozen base runs in eval mode
(no dropout), as a fixed feature extractor. (Full fine-tuning in notebook 02 keeps dropout in its
frozen layers, so it cannot use this.) The numbers are those of the full forward pass with the
prefix in eval mode (tested).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..encoders import prefix as prefix_mod
from .step import autocast_for, in_input_order, length_chunks, resolve_train_precision


class PrefixCache:
    """Per (kind, text): the hidden states after layer ``k`` of ``model`` (with the kind's prompt),
    computed once, in eval mode, at the training precision and maximum length."""

    def __init__(self, model, k: int, texts_by_kind: dict[str, Sequence[str]], *, max_seq_length: int,
                 precision: str = "auto", batch_tokens: int = 2048):
        if not prefix_mod.shareable(model, k):
            raise ValueError(f"the model's lowest {k} layers cannot be computed apart (an invertible adapter on "
                             "its embeddings, or not a BERT-style encoder)")
        self.k, self.max_seq_length = k, max_seq_length
        device = next(model.parameters()).device
        self.precision = resolve_train_precision(precision, device)
        self.states: dict[tuple[str, str], torch.Tensor] = {}
        tok = model.tokenizer
        was_training = model.training
        model.eval()
        try:
            for kind, texts in texts_by_kind.items():
                prompt = (getattr(model, "prompts", None) or {}).get(kind, "")
                unique = list(dict.fromkeys(texts))
                ids = tok([prompt + t for t in unique], truncation=True, max_length=max_seq_length,
                          padding=False)["input_ids"]
                order = sorted(range(len(unique)), key=lambda i: -len(ids[i]))
                i = 0
                with torch.inference_mode(), autocast_for(self.precision, device), prefix_mod.lower_layers_only(model, k):
                    while i < len(order):
                        width = len(ids[order[i]])
                        rows = order[i: i + max(1, batch_tokens // max(width, 1))]
                        i += len(rows)
                        input_ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
                        mask = torch.zeros((len(rows), width), dtype=torch.long)
                        for r, j in enumerate(rows):
                            input_ids[r, : len(ids[j])] = torch.tensor(ids[j])
                            mask[r, : len(ids[j])] = 1
                        out = model[0].auto_model(input_ids=input_ids.to(device),
                                                  attention_mask=mask.to(device)).last_hidden_state
                        for r, j in enumerate(rows):
                            self.states[(kind, unique[j])] = out[r, : len(ids[j])].float().clone()
        finally:
            if was_training:
                model.train()

    def embed(self, model, texts: Sequence[str], kind: str) -> torch.Tensor:
        """Sentence embeddings of ``texts`` *with gradients* through the upper layers only (under
        the caller's adapter set-up and autocast), in length-sorted chunks as
        :func:`~.step.embed_with_grad`."""
        states = [self.states[(kind, t)] for t in texts]
        chunks = length_chunks([s.shape[0] for s in states])
        return in_input_order(chunks, [self._embed_rows(model, [states[i] for i in chunk]) for chunk in chunks])

    def _embed_rows(self, model, states: Sequence[torch.Tensor]) -> torch.Tensor:
        width = max(s.shape[0] for s in states)
        device = states[0].device
        hidden = torch.zeros((len(states), width, states[0].shape[1]), device=device)
        mask = torch.zeros((len(states), width), dtype=torch.long, device=device)
        for r, s in enumerate(states):
            hidden[r, : s.shape[0]] = s
            mask[r, : s.shape[0]] = 1
        features = {"input_ids": torch.zeros_like(mask), "attention_mask": mask}
        with prefix_mod.upper_layers_from(model, self.k, hidden):
            return model(features)["sentence_embedding"]
