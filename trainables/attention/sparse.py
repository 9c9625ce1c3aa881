"""Sparse multi-head attention by token distribution (the EEG seeds' mechanism).

A permutation deals the N tokens out to ``num_heads = max(1, int(scale_factor * N))`` groups,
called heads in the seeds; each head is full width (queries, keys and values of width D, not
D/h) and runs softmax attention among its own tokens only; the inverse permutation puts the
outputs back in token order. Cost O(N^2 / h * D): with two tokens per head, linear in N.

The permutation is drawn afresh on every forward pass in training (a regulariser, like dropout
over token pairings) and is a fixed seeded one in evaluation, so inference is deterministic.
When N is not a multiple of the head count, the sequence is padded with masked tokens.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from trainables.attention import register_attention
from trainables.attention.softmax import MultiHeadProjections, softmax_attention


def token_group_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    order: torch.Tensor,
    groups: int,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax attention within groups of tokens, in the original token order.

    ``q``, ``k``, ``v`` (B, N, D) with N a multiple of ``groups``; ``order`` (N,) a permutation:
    group g holds tokens ``order[g * N/groups : (g + 1) * N/groups]``; ``mask`` (B, N) True for
    real keys. Returns (B, N, D).
    """
    batch, tokens, dim = q.shape
    size = tokens // groups

    def grouped(t: torch.Tensor) -> torch.Tensor:
        return t[:, order].reshape(batch * groups, 1, size, dim)  # (B*h, 1, N/h, D): groups as batch

    group_mask = None if mask is None else mask[:, order].reshape(batch * groups, size)
    out = softmax_attention(grouped(q), grouped(k), grouped(v), group_mask).reshape(batch, tokens, dim)
    return out[:, torch.argsort(order)]  # position i of `out` is token order[i]: undo the permutation


class SparseAttention(nn.Module):
    def __init__(self, dim: int, scale_factor: float = 0.5, dropout: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        if scale_factor <= 0:
            raise ValueError(f"scale_factor must be positive, got {scale_factor}")
        self.projections = MultiHeadProjections(dim, heads=1)  # one full-width projection, shared by all groups
        self.scale_factor = scale_factor
        self.seed = seed
        self.dropout = nn.Dropout(dropout)

    def heads(self, tokens: int) -> int:
        return max(1, int(self.scale_factor * tokens))

    def permutation(self, tokens: int, device: torch.device) -> torch.Tensor:
        """A fresh random permutation in training; in evaluation the same one on every call."""
        generator = None if self.training else torch.Generator().manual_seed(self.seed)
        return torch.randperm(tokens, generator=generator).to(device)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, tokens, _ = x.shape
        heads = self.heads(tokens)
        padding = -tokens % heads
        q, k, v = (t[:, 0] for t in self.projections.split(x))  # each (B, N, D)
        if padding:
            q, k, v = (F.pad(t, (0, 0, 0, padding)) for t in (q, k, v))  # (B, N + padding, D)
            real = torch.ones(batch, tokens, dtype=torch.bool, device=x.device) if mask is None else mask
            mask = F.pad(real, (0, padding), value=False)
        out = token_group_attention(q, k, v, self.permutation(tokens + padding, x.device), heads, mask)
        return self.dropout(self.projections.merge(out[:, None, :tokens]))  # (B, N, D)


@register_attention("sparse")
def sparse(dim: int, *, scale_factor: float = 0.5, dropout: float = 0.0, seed: int = 0) -> SparseAttention:
    return SparseAttention(dim, scale_factor=scale_factor, dropout=dropout, seed=seed)
