"""Boundary-aware attention: dense softmax attention plus a bias from learned boundary scores.

A small network scores every token, s_i = sigmoid(mlp(x_i)) in (0, 1), and the attention logit
of query i and key j gets the additive bias (s_i + s_j) / 2, the same for every head.

From the text-segmentation seed's original (``BoundaryAwareAttention._compute_boundary_bias``):
  kept     the predictor Linear(D, D/2) -> ReLU -> Dropout -> Linear(D/2, 1) -> sigmoid, the bias
           (s_i + s_j) / 2 shared by all heads, the 1/sqrt(d) scaling of the dot products.
  changed  the bias is a broadcast sum, built inside the additive mask that scaled_dot_product_attention
           needs anyway, instead of the nested Python loop over (i, j) that stalled training;
           masked keys get -inf and a token always sees itself (``softmax.visible_keys``), where the
           original filled -1e9 into a padded query's whole row, which then averaged over padding;
           the fixed temperature 2.0 inside the sigmoid is gone (the last linear layer learns any
           scale); positional encoding, the residual connection and LayerNorm belong to the model,
           and the attention weights are not returned.
Note: s_i is the same for every key of query i, so it shifts the whole row of logits and cancels in
the softmax; the output depends on the scores only through s_j / 2, a bias towards keys the
predictor marks as boundaries. The formula is kept as the seed states it.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from trainables.attention import register_attention
from trainables.attention.softmax import MultiHeadProjections, visible_keys


# ---------------------------------------------------------------- kernel


def boundary_biased_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, h, N, d) queries, keys, values; ``scores`` (B, N) boundary scores; ``mask`` (B, N) -> (B, h, N, d)."""
    bias = (scores[:, None, :, None] + scores[:, None, None, :]) / 2  # (B, 1, N, N)
    visible = visible_keys(mask, q.shape[-2], causal=False, device=q.device)
    if visible is not None:
        bias = bias.masked_fill(~visible, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


# ---------------------------------------------------------------- module


class BoundaryAwareAttention(nn.Module):
    """Multi-head attention biased by learned boundary scores: ``forward(x (B, N, D), mask) -> (B, N, D)``."""

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.projections = MultiHeadProjections(dim, heads)
        hidden = max(1, dim // 2)
        self.boundary_predictor = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )
        self.dropout = nn.Dropout(dropout)

    def boundary_scores(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N) in (0, 1): how much each token looks like a segment boundary."""
        return torch.sigmoid(self.boundary_predictor(x)).squeeze(-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.projections.split(x)  # each (B, h, N, d)
        out = boundary_biased_attention(q, k, v, self.boundary_scores(x), mask)  # (B, h, N, d)
        return self.dropout(self.projections.merge(out))


@register_attention("boundary_aware")
def boundary_aware(dim: int, *, heads: int = 4, dropout: float = 0.0) -> BoundaryAwareAttention:
    return BoundaryAwareAttention(dim, heads=heads, dropout=dropout)
