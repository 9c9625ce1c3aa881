"""Performer self-attention (FAVOR+) with exact key masking.

The random-feature kernels come from lucidrains' performer-pytorch. Its own ``SelfAttention``
masks only the values, so a padded token still enters the normaliser (and, for the softmax
kernel, the key stabiliser) and changes every other token's output. Here the key features of
masked tokens are zeroed after the feature map, so a masked-out token has no influence at all.

Kernels:
    ``relu``    generalized attention with ReLU features (the HeimdallNetPro seed's choice)
    ``elu``     generalized attention with ELU(x) + 1 features (positive, as in linear
                transformers; a bare ELU can make the normaliser vanish)
    ``softmax`` the standard FAVOR+ positive random features for the softmax kernel
"""
from __future__ import annotations

import torch
from performer_pytorch.performer_pytorch import (
    gaussian_orthogonal_random_matrix,
    generalized_kernel,
    linear_attention,
    softmax_kernel,
)
from torch import nn

from trainables.attention import register_attention
from trainables.attention.softmax import MultiHeadProjections

KERNELS = ("relu", "elu", "softmax")


class EluPlusOne(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.elu(x) + 1.0


def softmax_key_features(
    keys: torch.Tensor, projection: torch.Tensor, mask: torch.Tensor | None, eps: float = 1e-4
) -> torch.Tensor:
    """FAVOR+ key features whose stabilising maximum ignores masked keys.  # (B, h, N, m)"""
    normalizer = keys.shape[-1] ** -0.25
    dash = torch.einsum("bhnd,md->bhnm", normalizer * keys, projection.type_as(keys))
    diag = (keys**2).sum(dim=-1, keepdim=True) * (normalizer**2) / 2.0
    visible = dash if mask is None else dash.masked_fill(~mask[:, None, :, None], float("-inf"))
    stabiliser = torch.amax(visible, dim=(-1, -2), keepdim=True).detach()
    return projection.shape[0] ** -0.5 * (torch.exp(dash - diag - stabiliser) + eps)


class PerformerAttention(nn.Module):
    """Multi-head Performer self-attention: ``forward(x (B, N, D), mask (B, N)) -> (B, N, D)``."""

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        nb_features: int = 64,
        kernel: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"unknown Performer kernel {kernel!r}; known: {', '.join(KERNELS)}")
        self.projections = MultiHeadProjections(dim, heads)
        self.kernel = kernel
        self.dropout = nn.Dropout(dropout)
        self.kernel_fn = EluPlusOne() if kernel == "elu" else nn.ReLU()
        # A buffer, not a parameter: saved with the weights so a reloaded model is identical.
        self.register_buffer("projection", gaussian_orthogonal_random_matrix(nb_features, dim // heads))

    def features(self, x: torch.Tensor, is_query: bool, mask: torch.Tensor | None) -> torch.Tensor:
        if self.kernel == "softmax":
            if is_query:
                return softmax_kernel(x, projection_matrix=self.projection, is_query=True)
            return softmax_key_features(x, self.projection, mask)
        return generalized_kernel(x, projection_matrix=self.projection, kernel_fn=self.kernel_fn)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.projections.split(x)  # each (B, h, N, d)
        q_features, k_features = self.feature_maps(q, k, mask)
        out = linear_attention(q_features, k_features, v)  # (B, h, N, d)
        return self.dropout(self.projections.merge(out))

    def feature_maps(self, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Random features of queries and keys, (B, h, N, m) each; masked keys' features are zero."""
        q_features = self.features(q, is_query=True, mask=mask)
        k_features = self.features(k, is_query=False, mask=mask)
        return q_features, k_features if mask is None else k_features * mask[:, None, :, None]

    def attention_weights(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The attention matrix the linear attention implies, for inspection: (B, h, N, N).

        Forward never builds it: phi(q) phi(k)^T, normalised per query as linear_attention does.
        """
        q, k, _ = self.projections.split(x)
        q_features, k_features = self.feature_maps(q, k, mask)
        weights = q_features @ k_features.transpose(-1, -2)  # (B, h, N, N)
        return weights / weights.sum(dim=-1, keepdim=True).clamp(min=1e-12)


@register_attention("performer")
def performer(dim: int, *, heads: int = 8, nb_features: int = 64, kernel: str = "relu", dropout: float = 0.0) -> PerformerAttention:
    return PerformerAttention(dim, heads=heads, nb_features=nb_features, kernel=kernel, dropout=dropout)
