"""Temporal gating (CBAM's spatial attention, along the token axis): learn which tokens matter.

Each token's average and maximum over its D features form a two-channel sequence; a 1-D
convolution over the tokens and a sigmoid turn it into one gate per token. On EEG with time
steps as tokens, it emphasises the moments of the ERPs. Masked tokens' statistics are zeroed
before the convolution (as its own zero padding is), so they cannot reach their neighbours.
"""
from __future__ import annotations

import torch
from torch import nn

from trainables.attention import register_attention


class TemporalGate(nn.Module):
    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive (the output keeps N tokens), got {kernel_size}")
        self.conv = nn.Conv1d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        statistics = torch.stack([x.mean(dim=-1), x.amax(dim=-1)], dim=1)  # (B, 2, N)
        if mask is not None:
            statistics = statistics.masked_fill(~mask.unsqueeze(1), 0.0)
        gate = torch.sigmoid(self.conv(statistics))  # (B, 1, N)
        return x * gate.transpose(1, 2)  # (B, N, D)


@register_attention("temporal")
def temporal(dim: int, *, kernel_size: int = 7) -> TemporalGate:
    """``dim`` is unused: the gate works on per-token statistics, whatever the width."""
    return TemporalGate(kernel_size)
