"""Sanity measures of the adapter variants (notebook 03 §7): how far a language adapter moves a
language's representations, so that a collapse can be told from a bug."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from .plumbing import enable_adapters, lang_adapter_name, no_adapters


@torch.inference_mode()
def _token_states(model, texts: Sequence[str], max_seq_length: int) -> list[torch.Tensor]:
    tok = model.tokenizer
    auto = model[0].auto_model
    out = []
    for start in range(0, len(texts), 32):
        enc = tok(list(texts[start:start + 32]), padding=True, truncation=True, max_length=max_seq_length,
                  return_tensors="pt")
        h = auto(**enc).last_hidden_state
        out += [h[i, : int(m.sum())] for i, m in enumerate(enc["attention_mask"])]
    return out


def hidden_shift(model, texts_by_lang: dict[str, Sequence[str]], *, adapter_of=lang_adapter_name,
                 max_seq_length: int = 64) -> pd.DataFrame:
    """Per language, the relative shift ‖h_LA − h_base‖ / ‖h_base‖ of the final token states when
    the language's adapter is active (mean over tokens and texts; notebook 03 §7)."""
    from adapters import AdapterSetup  # lazy, as in plumbing.enable_adapters

    auto = enable_adapters(model)
    was_training = model.training
    model.eval()
    rows = []
    try:
        for lang, texts in texts_by_lang.items():
            name = adapter_of(lang)
            if name not in auto.adapters_config:
                continue
            with no_adapters(auto):
                base = _token_states(model, texts, max_seq_length)
            with AdapterSetup(name):
                adapted = _token_states(model, texts, max_seq_length)
            shifts = [float((a - b).norm(dim=-1).mean() / b.norm(dim=-1).mean()) for a, b in zip(adapted, base)]
            rows.append({"lang": lang, "adapter": name, "texts": len(texts), "relative_shift": float(np.mean(shifts))})
    finally:
        if was_training:
            model.train()
    return pd.DataFrame(rows)
