"""ALiBi attention (Press et al. 2022): softmax attention whose scores fall linearly with the
distance between tokens, a different slope per head; no position codes needed. Registered as
``alibi``, so any model that builds its attention with ``create_attention`` may use it."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from trainables.attention import register_attention
from trainables.attention.softmax import MultiHeadProjections, visible_keys


class AlibiAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.projections = MultiHeadProjections(dim, heads)
        # the paper's geometric slopes 2^(-8 i / heads): some heads look far, some near
        self.register_buffer("slopes", 2.0 ** (-8.0 * torch.arange(1, heads + 1) / heads), persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.projections.split(x)
        positions = torch.arange(x.shape[1], device=x.device)
        distance = (positions[None, :] - positions[:, None]).abs()  # (N, N)
        bias = -self.slopes[:, None, None] * distance  # (h, N, N)
        visible = visible_keys(mask, x.shape[1], False, x.device)
        if visible is not None:
            bias = bias.masked_fill(~visible, float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.dropout(self.projections.merge(out))


@register_attention("alibi")
def alibi(dim: int, *, heads: int = 4, dropout: float = 0.0) -> AlibiAttention:
    return AlibiAttention(dim, heads, dropout)
