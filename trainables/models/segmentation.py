"""Text segmentation: a boundary logit per sentence from attention over sentence vectors.

Call: ``model(tokens, sentence_mask) -> logits``
    tokens         (B, S, T) int64  hashed words per sentence, 0 = padding
    sentence_mask  (B, S) bool      True for a real sentence; padded sentences never change the
                                    logits of real ones
    logits         (B, S)           boundary after each sentence, before the sigmoid

Layers: hashed-word embeddings -> a sentence encoder (a convolution over neighbouring words, GELU,
max over the sentence's words, a linear map to the attention width; run on the real sentences
only, padded ones are zero vectors) -> sinusoidal sentence positions -> one pre-norm residual
attention layer over the sentences, built by ``create_attention`` so the mechanism is the
architecture's only difference -> LayerNorm -> an MLP on each sentence next to the one after it
(zeros after the last), since a boundary lies between the two: one logit per sentence. In a short
CPU trial that pair head learned faster than a head on the sentence alone.

Sizes follow the text-segmentation seed. Its original puts one attention module after a sequence
encoder, and its two counts, 446,466 (self, localized) and ~479K (boundary-aware), differ by about
33,025, the size of a 256 -> 128 -> 1 boundary predictor: so its attention was 256 wide, and so is
this one. The small hashed-word embedding (2^14 x 8) and encoder bring the baseline to 447,425.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from trainables.attention import create_attention
from trainables.models import register_model
from trainables.models.positions import sinusoidal_positions

FAMILY = "segmentation"


@dataclass(frozen=True)
class SegmenterConfig:
    vocab_size: int  # hash buckets, 0 = padding
    embedding_dim: int = 8  # per word bucket; vocab_size x embedding_dim is most of the parameters
    kernel_size: int = 5  # words the sentence encoder's convolution sees at once
    channels: int = 64  # convolution features; kept narrow, as it runs at every word
    dim: int = 256  # sentence vectors and attention width
    head_hidden: int = 64  # the boundary MLP's hidden width


class SentenceEncoder(nn.Module):
    """Hashed words (M, T) -> one vector per sentence (M, D). Padding words embed to zero, exactly
    like the convolution's own zero padding, so a sentence's vector does not depend on T."""

    def __init__(self, config: SegmenterConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=0)
        self.conv = nn.Conv1d(config.embedding_dim, config.channels, config.kernel_size, padding=config.kernel_size // 2)
        self.project = nn.Linear(config.channels, config.dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv(self.embedding(tokens).transpose(1, 2)))  # (M, C, T)
        x = x.masked_fill((tokens == 0)[:, None, :], float("-inf")).amax(dim=-1)  # (M, C)
        x = torch.where(torch.isfinite(x), x, torch.zeros_like(x))  # a sentence without words -> 0
        return self.project(x)  # (M, D)


class Segmenter(nn.Module):
    def __init__(self, config: SegmenterConfig, attention: nn.Module, dropout: float) -> None:
        super().__init__()
        self.encoder = SentenceEncoder(config)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(config.dim)
        self.attention = attention
        self.final_norm = nn.LayerNorm(config.dim)
        self.head = nn.Sequential(
            nn.Linear(2 * config.dim, config.head_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(config.head_hidden, 1)
        )

    def forward(self, tokens: torch.Tensor, sentence_mask: torch.Tensor) -> torch.Tensor:
        encoded = self.encoder(tokens[sentence_mask])  # (M, D), the M real sentences only
        x = encoded.new_zeros(*sentence_mask.shape, encoded.shape[-1])  # (B, S, D)
        x[sentence_mask] = encoded
        x = self.dropout(x + sinusoidal_positions(x.shape[1], x.shape[2], x.device))
        x = self.final_norm(x + self.attention(self.norm(x), sentence_mask))  # (B, S, D)
        following = F.pad(x[:, 1:], (0, 0, 0, 1)) * F.pad(sentence_mask[:, 1:], (0, 1)).unsqueeze(-1)  # (B, S, D)
        return self.head(torch.cat([x, following], dim=-1)).squeeze(-1)  # (B, S)


def build(context: Mapping[str, Any], kind: str, dropout: float, **attention_options: Any) -> Segmenter:
    config = SegmenterConfig(vocab_size=int(context["vocab_size"]))
    attention = create_attention(kind, config.dim, dropout=dropout, **attention_options)
    return Segmenter(config, attention, dropout)


@register_model(FAMILY, "self")
def self_attention(context: Mapping[str, Any], *, dropout: float = 0.1, heads: int = 8) -> Segmenter:
    """The baseline: dense softmax self-attention over the sentences."""
    return build(context, "softmax", dropout, heads=heads)


@register_model(FAMILY, "localized")
def localized(context: Mapping[str, Any], *, dropout: float = 0.1, heads: int = 8, window_size: int = 7) -> Segmenter:
    """Each sentence attends to the ``window_size`` sentences around it."""
    return build(context, "localized", dropout, heads=heads, window_size=window_size)


@register_model(FAMILY, "boundary_aware")
def boundary_aware(context: Mapping[str, Any], *, dropout: float = 0.1, heads: int = 8) -> Segmenter:
    """Attention biased towards sentences a learned scorer marks as boundaries."""
    return build(context, "boundary_aware", dropout, heads=heads)
