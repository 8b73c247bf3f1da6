"""The kit's in-batch contrastive loss at τ = 0.05 is sentence-transformers'
``MultipleNegativesRankingLoss`` at scale 20 (its default): same value and same gradients on the
same embeddings, with and without hard negatives."""
from __future__ import annotations

import pytest
import torch
try:  # its home since the sentence_transformer subpackage; the old path is a deprecated alias there
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
except ImportError:  # earlier 5.x releases
    from sentence_transformers.losses import MultipleNegativesRankingLoss

from xlir_utils.training.loss import info_nce


class FixedEmbeddings(torch.nn.Module):
    """A stand-in model: the embedding of a text is a row of a fixed table, picked by ``ids``."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table

    def forward(self, features: dict) -> dict:
        return {"sentence_embedding": self.table[features["ids"]]}


def _columns(batch: int, n_columns: int, dim: int = 24, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n_columns * batch, dim, generator=g) * 3).requires_grad_()  # unnormalised


def _mnrl(table: torch.Tensor, batch: int, n_columns: int, scale: float) -> torch.Tensor:
    loss = MultipleNegativesRankingLoss(FixedEmbeddings(table), scale=scale)
    features = [{"ids": torch.arange(k * batch, (k + 1) * batch)} for k in range(n_columns)]
    return loss(features, labels=None)


@pytest.mark.parametrize("n_columns", [2, 3])  # (query, positive), then with one hard negative each
def test_temperature_005_is_mnrl_scale_20(n_columns):
    batch = 8
    table = _columns(batch, n_columns)
    q, p = table[:batch], table[batch:2 * batch]
    hard = table[2 * batch:] if n_columns == 3 else None
    ours = info_nce(q, p, temperature=0.05, hard_negatives=hard)
    (grad_ours,) = torch.autograd.grad(ours, table)
    theirs = _mnrl(table, batch, n_columns, scale=20.0)
    (grad_theirs,) = torch.autograd.grad(theirs, table)
    assert MultipleNegativesRankingLoss(FixedEmbeddings(table)).scale == 20.0  # the default
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)
    torch.testing.assert_close(grad_ours, grad_theirs, atol=1e-6, rtol=1e-5)
    assert ours.item() > 0.1  # a problem the loss has not solved, so the temperature matters
    other = _mnrl(table, batch, n_columns, scale=10.0)  # τ = 0.1
    assert abs(ours.item() - other.item()) > 1e-2
    assert info_nce(q, p, temperature=0.1, hard_negatives=hard).item() == pytest.approx(other.item(), abs=1e-6)
