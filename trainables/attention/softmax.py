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
    return F.scaled_dot_product_attention(q, k, v, attn_mask=visible_keys(mask, q.shape[-2], causal, q.device))


def visible_keys(
    mask: torch.Tensor | None,
    tokens: int,
    causal: bool,
    device: torch.device | None = None,
    queries: slice = slice(None),
    keys: slice = slice(None),
) -> torch.Tensor | None:
    """Which keys each query may see: (B or 1, 1, n, m) bool, or None when every key is visible.

    The rule every exact mechanism shares. Each token may always see itself: a query whose
    visible keys are all masked (padding before the first real token under a causal mask) then
    gets a finite output, not NaN. ``queries`` and ``keys`` select a block of the N x N rule, so
    a tiled kernel can build one tile of it without the rest.
    """
    if mask is None and not causal:
        return None
    positions = torch.arange(tokens, device=device)
    query_positions, key_positions = positions[queries, None], positions[keys]  # (n, 1), (m,)
    real = torch.ones(1, tokens, dtype=torch.bool, device=device) if mask is None else mask  # (B or 1, N)
    visible = real[:, None, None, keys] | (key_positions == query_positions)  # (B or 1, 1, n, m)
    if causal:
        visible = visible & (key_positions <= query_positions)
    return visible


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

    def attention_weights(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The attention probabilities forward uses, for inspection: (B, h, N, N)."""
        q, k, _ = self.projections.split(x)
        scores = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5  # (B, h, N, N)
        visible = visible_keys(mask, x.shape[1], self.causal, x.device)
        return (scores if visible is None else scores.masked_fill(~visible, float("-inf"))).softmax(dim=-1)


@register_attention("softmax")
def softmax(dim: int, *, heads: int = 4, dropout: float = 0.0, causal: bool = False) -> SoftmaxAttention:
    return SoftmaxAttention(dim, heads, dropout, causal)
