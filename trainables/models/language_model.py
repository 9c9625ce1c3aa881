"""Character-level language model: a small causal transformer in the manner of nanoGPT.

Call: ``model(tokens) -> logits``
    tokens  (B, T) int64   characters, any T (trained on context["sequence_length"])
    logits  (B, T, V)      next-character scores at every position; position t sees tokens <= t only

Layers: token embeddings + fixed sinusoidal positions (no length limit, so the attention kinds can
be compared at contexts longer than the training windows) -> ``layers`` pre-norm blocks (causal attention built
by ``create_attention(kind, dim, causal=True, ...)``, then an MLP, each residual) -> LayerNorm ->
an output head tied to the token embedding (Press and Wolf 2017). The architectures differ only in
the attention kind: dense ``softmax`` (the baseline), exact ``tiled`` attention and ``hyperbolic``
attention in the Poincare ball.

The ``local_*`` architectures add one causal convolution over the last ``kernel`` character
embeddings (kernel 4: 65,664 parameters) before the blocks, and are otherwise the same. Why: with
fixed sinusoids at the embeddings' scale, attention must first learn to find the previous
characters by position; until it does, the network predicts from the current character alone, at
the level of a bigram model (the issue's 3.33 bits per character). Measured on the quick windows
(seed 1000, validation bits per character after each epoch; a Kneser-Ney bigram model: 3.64):
  AdamW 2e-3, batches of 16, dropout 0.1, warm-up + cosine over 6 epochs:
    softmax        3.82 3.69 3.64 3.60 3.54 3.46
    local_softmax  3.69 3.36 3.09 2.91 2.79 2.72
  AdamW 3e-3, batches of 8, dropout 0, warm-up + cosine over 8 epochs (softmax stopped after 5):
    softmax        3.74 3.67 3.64 3.60 3.51
    local_softmax  3.36 3.00 2.70 2.51 2.39 2.30 2.24 2.23 (test 2.26; training loss 2.01 bits)
  The same over 3 epochs, seeds 1000-1002: test 2.93 +- 0.07; the softmax baseline of the promotion
  policy (plateau schedule, batches of 32, 6 epochs): 3.56 +- 0.03.
Larger position codes did worse, as they drown the characters after the layer norms: scale 1.0
gave 4.58 after 2 epochs (unigram level), scale 0.2 4.38 after one.
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

FAMILY = "language_model"
POSITION_SCALE = 0.02  # the token embeddings' scale: unit sinusoids would drown the characters at first


@dataclass(frozen=True)
class CharTransformerConfig:
    vocab_size: int  # characters, including the unknown token
    sequence_length: int  # the training windows' length, for the record: positions have no limit
    dim: int = 128  # residual stream width
    layers: int = 4  # transformer blocks
    mlp_ratio: int = 4  # MLP hidden width / dim
    local_kernel: int = 0  # characters a causal convolution mixes into each embedding before the blocks; 0: none


class Block(nn.Module):
    """Pre-norm residual block: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: CharTransformerConfig, attention: nn.Module, dropout: float) -> None:
        super().__init__()
        hidden = config.mlp_ratio * config.dim
        self.attention_norm = nn.LayerNorm(config.dim)
        self.attention = attention
        self.mlp_norm = nn.LayerNorm(config.dim)
        self.mlp = nn.Sequential(nn.Linear(config.dim, hidden), nn.GELU(), nn.Linear(hidden, config.dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), None)  # (B, T, D), causal inside
        return x + self.mlp(self.mlp_norm(x))


class CausalConvolution(nn.Module):
    """``(B, T, D) -> (B, T, D)``: position t mixes the ``kernel`` embeddings t - kernel + 1 .. t (zeros before the start)."""

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.convolution = nn.Conv1d(dim, dim, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x.transpose(1, 2), (self.kernel - 1, 0))  # (B, D, kernel - 1 + T): left padding only, so causal
        return self.convolution(padded).transpose(1, 2)


class CharTransformer(nn.Module):
    def __init__(self, config: CharTransformerConfig, attentions: list[nn.Module], dropout: float) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.dim)
        nn.init.normal_(self.token_embedding.weight, std=0.02)  # nanoGPT's scale; the default N(0, 1) swamps tied logits
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(config, attention, dropout) for attention in attentions)
        self.final_norm = nn.LayerNorm(config.dim)
        self.local = CausalConvolution(config.dim, config.local_kernel) if config.local_kernel else None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        embedded = self.token_embedding(tokens)  # (B, T, D)
        if self.local is not None:
            embedded = embedded + self.local(embedded)
        positions = sinusoidal_positions(tokens.shape[1], embedded.shape[-1], tokens.device)
        x = self.dropout(embedded + POSITION_SCALE * positions)
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x) @ self.token_embedding.weight.T  # (B, T, V), tied head


def build(
    context: Mapping[str, Any], kind: str, heads: int, dropout: float, local_kernel: int = 0, **attention_options: Any
) -> CharTransformer:
    config = CharTransformerConfig(int(context["vocab_size"]), int(context["sequence_length"]), local_kernel=local_kernel)
    attentions = [
        create_attention(kind, config.dim, causal=True, heads=heads, dropout=dropout, **attention_options)
        for _ in range(config.layers)
    ]
    return CharTransformer(config, attentions, dropout)


@register_model(FAMILY, "softmax")
def softmax(context: Mapping[str, Any], *, heads: int = 4, dropout: float = 0.1) -> CharTransformer:
    """The baseline: dense causal softmax attention."""
    return build(context, "softmax", heads, dropout)


@register_model(FAMILY, "tiled")
def tiled(context: Mapping[str, Any], *, heads: int = 4, dropout: float = 0.1, tile_size: int | str = "adaptive") -> CharTransformer:
    """Exact attention computed tile by tile; ``tile_size`` an int or "adaptive"."""
    return build(context, "tiled", heads, dropout, tile_size=tile_size)


@register_model(FAMILY, "hyperbolic")
def hyperbolic(context: Mapping[str, Any], *, heads: int = 4, dropout: float = 0.1, curvature: float = 1.0) -> CharTransformer:
    """Distance attention in the Poincare ball of curvature -``curvature``."""
    return build(context, "hyperbolic", heads, dropout, curvature=curvature)


# ---------------------------------------------------------------- with a local convolution


@register_model(FAMILY, "local_softmax")
def local_softmax(context: Mapping[str, Any], *, heads: int = 4, dropout: float = 0.1, kernel: int = 4) -> CharTransformer:
    """Dense causal softmax attention over embeddings that already hold the last ``kernel`` characters."""
    return build(context, "softmax", heads, dropout, kernel)


@register_model(FAMILY, "local_tiled")
def local_tiled(
    context: Mapping[str, Any], *, heads: int = 4, dropout: float = 0.1, kernel: int = 4, tile_size: int | str = "adaptive"
) -> CharTransformer:
    """Tiled attention over embeddings that already hold the last ``kernel`` characters."""
    return build(context, "tiled", heads, dropout, kernel, tile_size=tile_size)


@register_model(FAMILY, "local_hyperbolic")
def local_hyperbolic(
    context: Mapping[str, Any], *, heads: int = 4, dropout: float = 0.1, kernel: int = 4, curvature: float = 1.0
) -> CharTransformer:
    """Hyperbolic attention over embeddings that already hold the last ``kernel`` characters."""
    return build(context, "hyperbolic", heads, dropout, kernel, curvature=curvature)
