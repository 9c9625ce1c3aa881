"""Exact multi-head softmax attention through torch's scaled_dot_product_attention.

The dense baseline every other mechanism is measured against: O(N^2) time and memory.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from trainables.attention import register_attention


def softmax_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False
) -> torch.Tensor:
    """(B, h, N, d) queries, keys, values; ``mask`` (B, N) True for real keys -> (B, h, N, d)."""
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    tokens = q.shape[-2]
    # Each token may always see itself: a query whose visible keys are all masked (padding
    # before the first real token under a causal mask) then gets a finite output, not NaN.
    itself = torch.eye(tokens, dtype=torch.bool, device=q.device)
    visible = mask[:, None, None, :] | itself  # (B, 1, N, N)
    if causal:
        visible = visible & torch.ones(tokens, tokens, dtype=torch.bool, device=q.device).tril()
    return F.scaled_dot_product_attention(q, k, v, attn_mask=visible)


class MultiHeadProjections(nn.Module):
    """The fused query/key/value projection and the output projection every mechanism shares."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.heads = heads
        self.to_qkv = nn.Linear(dim, 3 * dim)
        self.to_out = nn.Linear(dim, dim)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, N, D) -> queries, keys, values, each (B, h, N, D/h)."""
        batch, tokens, dim = x.shape
        qkv = self.to_qkv(x).view(batch, tokens, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        return q, k, v

    def merge(self, out: torch.Tensor) -> torch.Tensor:
        """(B, h, N, d) -> (B, N, h * d), projected."""
        batch, heads, tokens, head_dim = out.shape
        return self.to_out(out.transpose(1, 2).reshape(batch, tokens, heads * head_dim))


class SoftmaxAttention(nn.Module):
    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.0, causal: bool = False) -> None:
        super().__init__()
        self.projections = MultiHeadProjections(dim, heads)
        self.causal = causal
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.projections.split(x)
        return self.dropout(self.projections.merge(softmax_attention(q, k, v, mask, self.causal)))


@register_attention("softmax")
def softmax(dim: int, *, heads: int = 4, dropout: float = 0.0, causal: bool = False) -> SoftmaxAttention:
    return SoftmaxAttention(dim, heads, dropout, causal)
