"""Text segmentation: a boundary logit per sentence from attention over sentence vectors.

Call: ``model(tokens, sentence_mask) -> logits``
    tokens         (B, S, T) int64  hashed words per sentence, 0 = padding
    sentence_mask  (B, S) bool      True for a real sentence; padded sentences never change the
                                    logits of real ones
    logits         (B, S)           boundary after each sentence, before the sigmoid

Layers: an encoder gives each sentence a vector -> sinusoidal sentence positions -> one pre-norm
residual attention layer over the sentences, built by ``create_attention`` so the mechanism is the
architecture's only difference -> LayerNorm -> an MLP on each sentence next to the one after it
(zeros after the last), since a boundary lies between the two: one logit per sentence. In a short
CPU trial that pair head learned faster than a head on the sentence alone.

Encoders. The seed's (``self``, ``localized``, ``boundary_aware``): hashed-word embeddings -> a
convolution over neighbouring words, GELU, max over the sentence's words, a linear map to the
attention width (run on the real sentences only). It does not learn the task: on the quick
preset's data its training loss went from 0.71 to 0.65 in 6 epochs and its test Pk stayed at the
no-boundary level (0.455; none: 0.458), since 8-wide embeddings of 2^14 hashed words, max-pooled,
keep little of which words two sentences share, and that is the task's signal: segments come
from different modules, at random places in them. The ``*_cohesion`` architectures encode each
sentence by the lexical cohesion across the gap after it (trainables/models/text_tiling.py: the
idf-weighted cosine of the blocks of 1, 2, 3, 4, 6, 8 and 10 sentences on either side, and their
TextTiling depth scores), mapped linearly to the attention width; the attention then compares
gaps (is this dip the deepest around?), and the head sees the 14 features again. With the seed's
word encoder added next to the cohesion features the model overfitted the training modules (2000
documents: training loss 0.25, test Pk 0.236 against 0.206 without it; quick preset: 0.222
against 0.213), so the cohesion architectures leave it out.

Sizes follow the text-segmentation seed. Its original puts one attention module after a sequence
encoder, and its two counts, 446,466 (self, localized) and ~479K (boundary-aware), differ by about
33,025, the size of a 256 -> 128 -> 1 boundary predictor: so its attention was 256 wide, and so is
this one. The small hashed-word embedding (2^14 x 8) and encoder bring the baseline to 447,425;
the cohesion architectures have 301,825 (``boundary_aware_cohesion`` 33,025 more).
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
    """The seed's encoder: hashed words (B, S, T) -> one vector per sentence (B, S, D), run on the
    real sentences only (padded ones are zero vectors). Padding words embed to zero, exactly like
    the convolution's own zero padding, so a sentence's vector does not depend on T. No extra
    inputs for the head."""

    extra_size = 0

    def __init__(self, config: SegmenterConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=0)
        self.conv = nn.Conv1d(config.embedding_dim, config.channels, config.kernel_size, padding=config.kernel_size // 2)
        self.project = nn.Linear(config.channels, config.dim)

    def forward(self, tokens: torch.Tensor, sentence_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        words = tokens[sentence_mask]  # (M, T), the M real sentences
        x = F.gelu(self.conv(self.embedding(words).transpose(1, 2)))  # (M, C, T)
        x = x.masked_fill((words == 0)[:, None, :], float("-inf")).amax(dim=-1)  # (M, C)
        x = torch.where(torch.isfinite(x), x, torch.zeros_like(x))  # a sentence without words -> 0
        encoded = self.project(x)  # (M, D)
        out = encoded.new_zeros(*sentence_mask.shape, encoded.shape[-1])  # (B, S, D)
        out[sentence_mask] = encoded
        return out, out.new_zeros(*sentence_mask.shape, 0)


COHESION_WINDOWS = (1, 2, 3, 4, 6, 8, 10)  # sentences per block on each side of a gap


class CohesionEncoder(nn.Module):
    """The cohesion architectures' encoder: (tokens, sentence_mask) -> the lexical cohesion across
    the gap after each sentence, (B, S, 2W) (idf-weighted block cosine at each window, and its
    TextTiling depth score), mapped linearly to the attention width (B, S, D); the features also
    go to the head. The cosines have no parameters: the idf weights come from the training split
    through the model context."""

    def __init__(self, config: SegmenterConfig, idf: Sequence[float], windows: Sequence[int] = COHESION_WINDOWS) -> None:
        super().__init__()
        self.windows = tuple(windows)
        self.register_buffer("idf", torch.tensor(idf, dtype=torch.float32), persistent=False)  # rebuilt from the context
        self.project = nn.Linear(self.extra_size, config.dim)

    @property
    def extra_size(self) -> int:
        return 2 * len(self.windows)

    def forward(self, tokens: torch.Tensor, sentence_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cohesion = block_cohesion(tokens, sentence_mask, self.idf, self.windows)  # (B, S, W)
        batch, sentences, windows = cohesion.shape
        # all windows in one call: depth_scores steps through the sentences, so fewer calls, less latency
        curves = cohesion.transpose(1, 2).reshape(batch * windows, sentences)  # (B * W, S)
        depth = depth_scores(curves, sentence_mask.repeat_interleave(windows, dim=0)).reshape(batch, windows, sentences).transpose(1, 2)
        features = torch.cat([cohesion, depth], dim=-1) * sentence_mask[..., None]  # (B, S, 2W)
        return self.project(features) * sentence_mask[..., None], features  # (B, S, D), (B, S, 2W)


class Segmenter(nn.Module):
    def __init__(self, config: SegmenterConfig, encoder: SentenceEncoder | CohesionEncoder, attention: nn.Module, dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(config.dim)
        self.attention = attention
        self.final_norm = nn.LayerNorm(config.dim)
        self.head = nn.Sequential(
            nn.Linear(2 * config.dim + encoder.extra_size, config.head_hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(config.head_hidden, 1),
        )

    def forward(self, tokens: torch.Tensor, sentence_mask: torch.Tensor) -> torch.Tensor:
        x, extra = self.encoder(tokens, sentence_mask)  # (B, S, D), (B, S, E)
        x = self.dropout(x + sinusoidal_positions(x.shape[1], x.shape[2], x.device))
        x = self.final_norm(x + self.attention(self.norm(x), sentence_mask))  # (B, S, D)
        following = F.pad(x[:, 1:], (0, 0, 0, 1)) * F.pad(sentence_mask[:, 1:], (0, 1)).unsqueeze(-1)  # (B, S, D)
        return self.head(torch.cat([x, following, extra], dim=-1)).squeeze(-1)  # (B, S)


def build(context: Mapping[str, Any], kind: str, dropout: float, cohesion: bool = False, **attention_options: Any) -> Segmenter:
    """``cohesion``: the sentences enter as their cohesion features instead of the seed's word encoder."""
    config = SegmenterConfig(vocab_size=int(context["vocab_size"]))
    encoder = CohesionEncoder(config, context["word_idf"]) if cohesion else SentenceEncoder(config)
    attention = create_attention(kind, config.dim, dropout=dropout, **attention_options)
    return Segmenter(config, encoder, attention, dropout)


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
    """``self`` over the sentences' lexical-cohesion features."""
    return build(context, "softmax", dropout, cohesion=True, heads=heads)


@register_model(FAMILY, "localized_cohesion")
def localized_cohesion(context: Mapping[str, Any], *, dropout: float = 0.1, heads: int = 8, window_size: int = 7) -> Segmenter:
    """``localized`` over the sentences' lexical-cohesion features."""
    return build(context, "localized", dropout, cohesion=True, heads=heads, window_size=window_size)


@register_model(FAMILY, "boundary_aware_cohesion")
def boundary_aware_cohesion(context: Mapping[str, Any], *, dropout: float = 0.1, heads: int = 8) -> Segmenter:
    """``boundary_aware`` over the sentences' lexical-cohesion features."""
    return build(context, "boundary_aware", dropout, cohesion=True, heads=heads)
