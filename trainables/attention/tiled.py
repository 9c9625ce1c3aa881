"""Tiled attention: exact softmax attention computed one tile of keys at a time.

The result is that of ``softmax_attention`` (same visibility rule, ``softmax.visible_keys``), but
the N x N score matrix never exists. Keys are visited in tiles of ``tile_size``; an online softmax
(as in FlashAttention) keeps, per query, the running maximum of its logits, the running normaliser
and the running weighted sum of values, and rescales the sums by exp(old_max - new_max) whenever a
later tile raises the maximum. A hand-written backward recomputes each tile's probabilities from
the saved log-sum-exp, as FlashAttention does: autograd through the loop would keep every tile's
probabilities, N x N again. So memory is O(N * tile) for one tile's scores plus O(N * d) for the
accumulators, in training as in inference. Under ``causal``, the tile of keys starting at s is
scored only against queries >= s, which skips the blocks above the diagonal, about half the work.
On CPU, torch's scaled_dot_product_attention without a mask is a fused kernel and faster; with a
padding mask, ``softmax_attention`` builds a (B, 1, N, N) mask (and SDPA a float copy of it).

Adaptive tile size: the largest power of two T (at least ``MIN_TILE``, at most N) such that
``TILE_TENSORS`` (B, h, N, T) tensors fit in ``memory_budget_mb``: the backward holds a tile's
probabilities and their gradient (updated in place), and the visibility mask and matrix-product
temporaries need about as much again. The O(N * d) accumulators and gradients come on top. Any tile
size gives the same result; the rule trades memory for fewer, larger matrix products.
"""
from __future__ import annotations

from typing import Any, Iterator, Literal

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from trainables.attention import register_attention
from trainables.attention.softmax import MultiHeadProjections, visible_keys

ADAPTIVE = "adaptive"
MIN_TILE = 16
TILE_TENSORS = 4


# ---------------------------------------------------------------- kernel


def tiled_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    causal: bool = False,
    tile_size: int = 64,
) -> torch.Tensor:
    """(B, h, N, d) queries, keys, values; ``mask`` (B, N) True for real keys -> (B, h, N, d)."""
    return _TiledSoftmax.apply(q, k, v, mask, causal, tile_size)


def adaptive_tile_size(tokens: int, batch_heads: int, element_size: int, memory_budget_mb: float) -> int:
    """The largest power-of-two tile in [MIN_TILE, tokens] whose working set fits the budget."""
    bytes_per_key = TILE_TENSORS * batch_heads * tokens * element_size
    fitting = int(memory_budget_mb * 2**20) // bytes_per_key
    power_of_two = 1 << (fitting.bit_length() - 1) if fitting else 0
    return min(tokens, max(MIN_TILE, power_of_two))


class _TiledSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        causal: bool,
        tile_size: int,
    ) -> torch.Tensor:
        out, logsumexp = _forward_tiles(q, k, v, mask, causal, tile_size)
        ctx.save_for_backward(q, k, v, mask, out, logsumexp)
        ctx.causal, ctx.tile_size = causal, tile_size
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        q, k, v, mask, out, logsumexp = ctx.saved_tensors
        gradients = _backward_tiles(q, k, v, mask, out, logsumexp, d_out, ctx.causal, ctx.tile_size)
        return (*gradients, None, None, None)


def _tiles(tokens: int, tile_size: int, causal: bool) -> Iterator[tuple[int, slice]]:
    """(first query that can see the tile, the tile's keys) for every tile of keys."""
    for start in range(0, tokens, tile_size):
        yield (start if causal else 0), slice(start, min(start + tile_size, tokens))


def _tile_scores(
    q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None, first: int, keys: slice, causal: bool
) -> torch.Tensor:
    """Scaled logits of queries ``first:`` against one tile of keys, hidden keys at -inf.  # (B, h, n, T)"""
    scores = (q[..., first:, :] @ k[..., keys, :].transpose(-1, -2)).mul_(q.shape[-1] ** -0.5)
    visible = visible_keys(mask, q.shape[-2], causal, q.device, queries=slice(first, None), keys=keys)
    return scores if visible is None else scores.masked_fill_(visible.logical_not_(), float("-inf"))


def _forward_tiles(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, causal: bool, tile_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Online softmax over key tiles -> output (B, h, N, d) and per-query log-sum-exp (B, h, N, 1)."""
    running_max = q.new_full((*q.shape[:-1], 1), float("-inf"))  # (B, h, N, 1)
    normaliser = q.new_zeros((*q.shape[:-1], 1))  # (B, h, N, 1)
    total = q.new_zeros((*q.shape[:-1], v.shape[-1]))  # (B, h, N, d)
    for first, keys in _tiles(q.shape[-2], tile_size, causal):
        scores = _tile_scores(q, k, mask, first, keys, causal)  # (B, h, n, T)
        old_max = running_max[..., first:, :]
        new_max = torch.maximum(old_max, scores.amax(dim=-1, keepdim=True))
        shift = new_max.masked_fill(new_max == float("-inf"), 0.0)  # finite while a row has seen no key yet
        probs = scores.sub_(shift).exp_()  # (B, h, n, T), in place: one tile-sized tensor at a time
        rescale = torch.exp(old_max - shift)  # (B, h, n, 1), 0 for rows that had seen nothing
        normaliser[..., first:, :] = normaliser[..., first:, :] * rescale + probs.sum(dim=-1, keepdim=True)
        total[..., first:, :] = total[..., first:, :] * rescale + probs @ v[..., keys, :]
        running_max[..., first:, :] = new_max
    # Every query sees at least itself, so the normaliser is >= 1 and the maximum finite.
    return total / normaliser, running_max + normaliser.log()


def _backward_tiles(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    out: torch.Tensor,
    logsumexp: torch.Tensor,
    d_out: torch.Tensor,
    causal: bool,
    tile_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients for q, k, v, each tile's probabilities recomputed as exp(scores - logsumexp)."""
    scale = q.shape[-1] ** -0.5
    row_dot = (d_out * out).sum(dim=-1, keepdim=True)  # (B, h, N, 1) = sum_j p_ij dL/dp_ij
    d_q, d_k, d_v = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for first, keys in _tiles(q.shape[-2], tile_size, causal):
        probs = _tile_scores(q, k, mask, first, keys, causal).sub_(logsumexp[..., first:, :]).exp_()  # (B, h, n, T)
        d_v[..., keys, :] = probs.transpose(-1, -2) @ d_out[..., first:, :]
        d_probs = d_out[..., first:, :] @ v[..., keys, :].transpose(-1, -2)  # (B, h, n, T)
        d_scores = d_probs.sub_(row_dot[..., first:, :]).mul_(probs).mul_(scale)  # through softmax and 1/sqrt(d)
        d_q[..., first:, :] += d_scores @ k[..., keys, :]
        d_k[..., keys, :] = d_scores.transpose(-1, -2) @ q[..., first:, :]
    return d_q, d_k, d_v


# ---------------------------------------------------------------- module


class TiledAttention(nn.Module):
    """Multi-head exact attention, tile by tile: ``forward(x (B, N, D), mask (B, N)) -> (B, N, D)``."""

    def __init__(
        self,
        dim: int,
        heads: int = 4,
        tile_size: int | Literal["adaptive"] = 64,
        memory_budget_mb: float = 64.0,
        dropout: float = 0.0,
        causal: bool = False,
    ) -> None:
        super().__init__()
        if tile_size != ADAPTIVE and not (isinstance(tile_size, int) and tile_size >= 1):
            raise ValueError(f"tile_size must be an int >= 1 or {ADAPTIVE!r}, but got {tile_size!r}")
        if not memory_budget_mb > 0:
            raise ValueError(f"memory_budget_mb must be > 0, but got {memory_budget_mb}")
        self.projections = MultiHeadProjections(dim, heads)
        self.tile_size = tile_size
        self.memory_budget_mb = memory_budget_mb
        self.causal = causal
        self.dropout = nn.Dropout(dropout)

    def tile_size_for(self, q: torch.Tensor) -> int:
        """The configured tile size, or the adaptive one for queries ``q`` (B, h, N, d)."""
        if self.tile_size != ADAPTIVE:
            return self.tile_size
        batch, heads, tokens, _ = q.shape
        return adaptive_tile_size(tokens, batch * heads, q.element_size(), self.memory_budget_mb)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.projections.split(x)  # each (B, h, N, d)
        out = tiled_attention(q, k, v, mask, self.causal, self.tile_size_for(q))  # (B, h, N, d)
        return self.dropout(self.projections.merge(out))


@register_attention("tiled")
def tiled(
    dim: int,
    *,
    heads: int = 4,
    tile_size: int | Literal["adaptive"] = 64,
    memory_budget_mb: float = 64.0,
    dropout: float = 0.0,
    causal: bool = False,
) -> TiledAttention:
    return TiledAttention(
        dim, heads=heads, tile_size=tile_size, memory_budget_mb=memory_budget_mb, dropout=dropout, causal=causal
    )
