"""The in-batch contrastive loss (notebook 02 §3).

Deviation from the paper (recorded in the README): the printed loss has no temperature and
leaves the other queries' positives out of the denominator, which barely trains; the kit uses
the usual form, every in-batch passage in the denominator and a temperature τ (τ = 0.05 is
sentence-transformers' ``MultipleNegativesRankingLoss`` with scale 20; the quick profile's τ is
chosen on the development set).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(q: torch.Tensor, p: torch.Tensor, temperature: float,
             hard_negatives: torch.Tensor | None = None) -> torch.Tensor:
    """In-batch contrastive loss: query i's positive is passage i; all passages are negatives
    (notebook 02 §3). Computed in fp32 whatever the embeddings' dtype."""
    q, p = F.normalize(q.float(), dim=-1), F.normalize(p.float(), dim=-1)
    logits = q @ p.T
    if hard_negatives is not None:
        logits = torch.cat([logits, q @ F.normalize(hard_negatives.float(), dim=-1).T], dim=1)
    labels = torch.arange(q.shape[0], device=q.device)
    return F.cross_entropy(logits / temperature, labels)
