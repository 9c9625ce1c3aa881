"""The activity family's architectures. Inputs: ``signal`` (B, 3, T) accelerations in m/s^2;
output: (B, classes) logits. The keyword-only arguments are what a search space may set."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from trainables.attention import create_attention
from trainables.models import register_model

FAMILY = "activity"


class Standardise(nn.Module):
    """Scale the raw axes by the training split's statistics (carried in the model's context)."""

    def __init__(self, context: Mapping[str, Any]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(context["signal_mean"]).view(1, -1, 1))
        self.register_buffer("std", torch.tensor(context["signal_std"]).view(1, -1, 1))

    def forward(self, signal: torch.Tensor) -> torch.Tensor:
        return (signal - self.mean) / self.std


def stem(width: int, dropout: float) -> nn.Sequential:
    """Two strided convolutions: T samples -> T / 4 steps of ``width`` features."""
    return nn.Sequential(
        nn.Conv1d(3, width, 7, stride=2, padding=3), nn.BatchNorm1d(width), nn.GELU(), nn.Dropout(dropout),
        nn.Conv1d(width, width, 5, stride=2, padding=2), nn.BatchNorm1d(width), nn.GELU(),
    )  # fmt: skip


class ConvNet(nn.Module):
    """The baseline: the stem, one more convolution, and the average over time."""

    def __init__(self, context: Mapping[str, Any], width: int, dropout: float) -> None:
        super().__init__()
        self.standardise = Standardise(context)
        self.features = nn.Sequential(stem(width, dropout), nn.Conv1d(width, width, 5, padding=2), nn.GELU())
        self.classify = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, context["classes"]))

    def forward(self, signal: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(self.standardise(signal)).mean(dim=-1))


class AttentionBlock(nn.Module):
    def __init__(self, width: int, attention: nn.Module, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = attention
        self.feed_forward = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.feed_forward(self.norm2(x))


class AttentionNet(nn.Module):
    """The stem, then attention over its time steps, then the average over time."""

    def __init__(self, context: Mapping[str, Any], width: int, depth: int, attention: str, heads: int, dropout: float) -> None:
        super().__init__()
        self.standardise = Standardise(context)
        self.stem = stem(width, dropout)
        self.blocks = nn.Sequential(*(
            AttentionBlock(width, create_attention(attention, width, heads=heads, dropout=dropout), dropout) for _ in range(depth)
        ))  # fmt: skip
        self.classify = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, context["classes"]))

    def forward(self, signal: torch.Tensor) -> torch.Tensor:
        steps = self.stem(self.standardise(signal)).transpose(1, 2)  # (B, T / 4, width)
        return self.classify(self.blocks(steps).mean(dim=1))


@register_model(FAMILY, "conv_net")
def conv_net(context: Mapping[str, Any], *, width: int = 32, dropout: float = 0.1) -> ConvNet:
    return ConvNet(context, width, dropout)


@register_model(FAMILY, "attention_net")
def attention_net(
    context: Mapping[str, Any], *, width: int = 32, depth: int = 2, attention: str = "alibi", heads: int = 4, dropout: float = 0.1
) -> AttentionNet:
    return AttentionNet(context, width, depth, attention, heads, dropout)
