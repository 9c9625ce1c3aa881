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
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from trainables.attention import create_attention
from trainables.models import register_model
from trainables.models.positions import sinusoidal_positions
from trainables.models.text_tiling import block_cohesion, depth_scores

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


COHESION_WINDOWS = (1, 2, 3, 4, 6, 8, 10)  # sentences per block on each side of a gap


class CohesionFeatures(nn.Module):
    """(tokens, sentence_mask) -> (B, S, 2W) lexical cohesion across the gap after each sentence
    (idf-weighted block cosine at each window, then its TextTiling depth score); no parameters,
    the idf weights come from the training split through the model context."""

    def __init__(self, idf: Sequence[float], windows: Sequence[int] = COHESION_WINDOWS) -> None:
        super().__init__()
        self.windows = tuple(windows)
        self.register_buffer("idf", torch.tensor(idf, dtype=torch.float32), persistent=False)  # rebuilt from the context

    @property
    def size(self) -> int:
        return 2 * len(self.windows)

    def forward(self, tokens: torch.Tensor, sentence_mask: torch.Tensor) -> torch.Tensor:
        cohesion = block_cohesion(tokens, sentence_mask, self.idf, self.windows)  # (B, S, W)
        depth = torch.stack([depth_scores(cohesion[..., k], sentence_mask) for k in range(len(self.windows))], dim=-1)
        return torch.cat([cohesion, depth], dim=-1) * sentence_mask[..., None]  # (B, S, 2W)


class Segmenter(nn.Module):
    def __init__(self, config: SegmenterConfig, attention: nn.Module, dropout: float, cohesion: CohesionFeatures | None = None) -> None:
        super().__init__()
        self.cohesion = cohesion
        features = cohesion.size if cohesion is not None else 0
        # cohesion enters the attention's input (so attention can compare gaps) and the head
        self.features_in = nn.Linear(features, config.dim) if cohesion is not None else None
        self.encoder = SentenceEncoder(config)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(config.dim)
        self.attention = attention
        self.final_norm = nn.LayerNorm(config.dim)
        self.head = nn.Sequential(
            nn.Linear(2 * config.dim + features, config.head_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(config.head_hidden, 1)
        )

    def forward(self, tokens: torch.Tensor, sentence_mask: torch.Tensor) -> torch.Tensor:
        encoded = self.encoder(tokens[sentence_mask])  # (M, D), the M real sentences only
        x = encoded.new_zeros(*sentence_mask.shape, encoded.shape[-1])  # (B, S, D)
        x[sentence_mask] = encoded
        x = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device)
        features = []
        if self.cohesion is not None:
            features = [self.cohesion(tokens, sentence_mask)]  # (B, S, F)
            x = x + self.features_in(features[0]) * sentence_mask[..., None]
        x = self.dropout(x)
        x = self.final_norm(x + self.attention(self.norm(x), sentence_mask))  # (B, S, D)
        following = F.pad(x[:, 1:], (0, 0, 0, 1)) * F.pad(sentence_mask[:, 1:], (0, 1)).unsqueeze(-1)  # (B, S, D)
        return self.head(torch.cat([x, following, *features], dim=-1)).squeeze(-1)  # (B, S)


def build(context: Mapping[str, Any], kind: str, dropout: float, cohesion: bool = False, **attention_options: Any) -> Segmenter:
    config = SegmenterConfig(vocab_size=int(context["vocab_size"]))
    attention = create_attention(kind, config.dim, dropout=dropout, **attention_options)
    return Segmenter(config, attention, dropout, CohesionFeatures(context["word_idf"]) if cohesion else None)


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


@register_model(FAMILY, "self_cohesion")
def self_cohesion(context: Mapping[str, Any], *, dropout: float = 0.1, heads: int = 8) -> Segmenter:
    """``self`` with lexical-cohesion features next to the sentence vectors."""
    return build(context, "softmax", dropout, cohesion=True, heads=heads)


@register_model(FAMILY, "localized_cohesion")
def localized_cohesion(context: Mapping[str, Any], *, dropout: float = 0.1, heads: int = 8, window_size: int = 7) -> Segmenter:
    """``localized`` with lexical-cohesion features next to the sentence vectors."""
    return build(context, "localized", dropout, cohesion=True, heads=heads, window_size=window_size)


@register_model(FAMILY, "boundary_aware_cohesion")
def boundary_aware_cohesion(context: Mapping[str, Any], *, dropout: float = 0.1, heads: int = 8) -> Segmenter:
    """``boundary_aware`` with lexical-cohesion features next to the sentence vectors."""
    return build(context, "boundary_aware", dropout, cohesion=True, heads=heads)
