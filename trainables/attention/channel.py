"""Channel gating (CBAM's channel attention): learn which features matter, from all tokens.

Average and maximum of each feature over the real tokens pass through one shared bottleneck MLP
(D -> D/reduction -> D); their sum, through a sigmoid, scales that feature in every token. On raw
EEG with time steps as tokens, the features are the electrodes: it weights brain regions.
Masked tokens enter neither statistic, so they cannot change the gate.
"""
from __future__ import annotations

import torch
from torch import nn

from trainables.attention import register_attention


def masked_average_and_max(x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and max over the tokens of ``x`` (B, N, D) where ``mask`` (B, N) is True: each (B, D)."""
    if mask is None:
        return x.mean(dim=1), x.amax(dim=1)
    real = mask.unsqueeze(-1)  # (B, N, 1)
    count = real.sum(dim=1).clamp(min=1)
    average = x.masked_fill(~real, 0.0).sum(dim=1) / count
    maximum = x.masked_fill(~real, float("-inf")).amax(dim=1)
    return average, torch.where(real.any(dim=1), maximum, torch.zeros_like(maximum))  # no real token: 0


class ChannelGate(nn.Module):
    def __init__(self, dim: int, reduction: int = 8) -> None:
        super().__init__()
        if reduction < 1:
            raise ValueError(f"reduction must be at least 1, got {reduction}")
        hidden = max(1, dim // reduction)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, dim, bias=False))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        average, maximum = masked_average_and_max(x, mask)  # each (B, D)
        gate = torch.sigmoid(self.mlp(average) + self.mlp(maximum))  # (B, D)
        return x * gate.unsqueeze(1)  # (B, N, D)


@register_attention("channel")
def channel(dim: int, *, reduction: int = 8) -> ChannelGate:
    return ChannelGate(dim, reduction)
