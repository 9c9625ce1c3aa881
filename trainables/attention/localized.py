"""Localized attention: each token attends only to the keys in a band around it.

The band: query i sees key j when |i - j| <= window_size // 2, so ``window_size=7`` gives the 7
nearest keys and an even size rounds up to the next odd one (the text-segmentation seed's original
used the same half-window rule). With ``causal`` only the left half of the band remains:
i - window_size // 2 <= j <= i. Inside the band the result is exactly dense softmax attention under
the shared visibility rule of ``softmax.visible_keys`` (masked keys are invisible, a token always
sees itself) with every key outside the band hidden as well.

Why a gather and not a mask: the original built an N x N mask and ran dense attention, O(N^2) time
and memory for O(N * w) useful work. Here each query's band of keys and values is a view over the
padded keys (``unfold``), so time and memory are O(N * w * d) and no N x N tensor ever exists.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from trainables.attention import register_attention
from trainables.attention.softmax import MultiHeadProjections


# ---------------------------------------------------------------- kernel


def band_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    window_size: int = 7,
    causal: bool = False,
) -> torch.Tensor:
    """(B, h, N, d) queries, keys, values; ``mask`` (B, N) True for real keys -> (B, h, N, d)."""
    left = window_size // 2
    right = 0 if causal else left
    keys, values = band_of(k, left, right), band_of(v, left, right)  # each (B, h, N, d, W)
    scores = torch.einsum("bhnd,bhndw->bhnw", q, keys) * q.shape[-1] ** -0.5  # (B, h, N, W)
    visible = band_visibility(mask, q.shape[-2], left, right, q.device)  # (B or 1, 1, N, W)
    weights = scores.masked_fill(~visible, float("-inf")).softmax(dim=-1)
    return torch.einsum("bhnw,bhndw->bhnd", weights, values)


def band_of(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """(B, h, N, d) -> (B, h, N, d, W = left + 1 + right): slot t of token i holds token i - left + t.

    Positions outside the sequence hold zeros (``band_visibility`` hides them). A view over the
    padded tensor: nothing of size N x W is copied here.
    """
    padded = F.pad(x, (0, 0, left, right))  # (B, h, left + N + right, d)
    return padded.unfold(-2, left + 1 + right, 1)


def band_visibility(
    mask: torch.Tensor | None, tokens: int, left: int, right: int, device: torch.device | None = None
) -> torch.Tensor:
    """(B or 1, 1, N, W) bool: slot t of query i is a real key inside the sequence, or i itself."""
    keys = torch.ones(1, tokens, dtype=torch.bool, device=device) if mask is None else mask  # (B or 1, N)
    inside = F.pad(keys, (left, right), value=False).unfold(-1, left + 1 + right, 1)  # (B or 1, N, W)
    itself = torch.arange(left + 1 + right, device=device) == left  # (W,)
    return (inside | itself)[:, None]


# ---------------------------------------------------------------- module


class LocalizedAttention(nn.Module):
    """Multi-head band attention: ``forward(x (B, N, D), mask (B, N)) -> (B, N, D)``."""

    def __init__(
        self, dim: int, heads: int = 4, window_size: int = 7, dropout: float = 0.0, causal: bool = False
    ) -> None:
        super().__init__()
        if window_size < 1:
            raise ValueError(f"window_size must be >= 1, but got {window_size}")
        self.projections = MultiHeadProjections(dim, heads)
        self.window_size = window_size
        self.causal = causal
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.projections.split(x)  # each (B, h, N, d)
        out = band_attention(q, k, v, mask, self.window_size, self.causal)  # (B, h, N, d)
        return self.dropout(self.projections.merge(out))


@register_attention("localized")
def localized(
    dim: int, *, heads: int = 4, window_size: int = 7, dropout: float = 0.0, causal: bool = False
) -> LocalizedAttention:
    return LocalizedAttention(dim, heads=heads, window_size=window_size, dropout=dropout, causal=causal)
