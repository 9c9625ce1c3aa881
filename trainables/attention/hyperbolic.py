"""Hyperbolic attention: attention weights from geodesic distances in the Poincare ball.

Queries and keys are read as tangent vectors at the origin of the Poincare ball of curvature -c
(radius 1/sqrt(c)) and mapped into it with the exponential map at the origin. The logit of query i
and key j is -beta_h * d_c(q_i, k_j): nearer keys weigh more, and a learnable inverse temperature
per head, beta_h = exp(log_beta_h) starting at 1, sets how sharply.

Values are aggregated in the tangent space at the origin: each value is a tangent vector v_j and
the output is the weighted tangent mean sum_j a_ij v_j. Mapping the values into the ball and back
would change nothing (logmap0(expmap0(v)) = v), so this is a Euclidean weighted sum and the
geometry enters through the weights only. The Einstein midpoint, which also weighs values by
their distance from the origin, is the alternative not taken.

The ball's mathematics are pure functions below. Numerical safety, the seed's open problems:
  * norms are clamped away from zero before dividing: zero vectors map to zero, gradients finite;
  * tanh rounds to exactly 1 for large arguments, so exp-map outputs are projected to the radius
    (1 - eps) / sqrt(c), eps = 1e-5 in float64 and 4e-3 otherwise (geoopt's choices; a smaller
    float32 eps makes the conformal factor below imprecise and its gradients huge): strictly
    inside the ball for inputs up to the float32 norm overflow (entries around 1e19). The exp map
    therefore saturates at sqrt(c)|v| = artanh(1 - eps): about 3.1 in float32, 6.1 in float64;
  * the log map's artanh argument is clamped to <= 1 - eps: boundary points stay finite;
  * the distance is arcosh(1 + a) / sqrt(c), a = 2c|x - y|^2 / ((1 - c|x|^2)(1 - c|y|^2)), evaluated
    as log1p(a + sqrt(a (a + 2))) with sqrt(a) taken from |x - y|: equal to the Mobius form
    2/sqrt(c) artanh(sqrt(c)|(-x) (+)_c y|), but symmetric by construction, exactly zero at x = y
    with a zero (not NaN) gradient there, and with no artanh clamp capping the distance of two
    points near the boundary.
"""
from __future__ import annotations

import torch
from torch import nn

from trainables.attention import register_attention
from trainables.attention.softmax import MultiHeadProjections, visible_keys

MIN_NORM = 1e-15


# ---------------------------------------------------------------- Poincare ball


def ball_eps(dtype: torch.dtype) -> float:
    """How far inside the boundary points are kept, relative to the radius."""
    return 1e-5 if dtype == torch.float64 else 4e-3


def expmap0(v: torch.Tensor, c: float) -> torch.Tensor:
    """Tangent vectors at the origin (..., D) -> points strictly inside the ball (..., D)."""
    sqrt_c = c**0.5
    norm = _norm(v)
    return project(torch.tanh(sqrt_c * norm) * v / (sqrt_c * norm), c)


def logmap0(y: torch.Tensor, c: float) -> torch.Tensor:
    """Points of the ball (..., D) -> tangent vectors at the origin (..., D); finite on the boundary."""
    sqrt_c = c**0.5
    norm = _norm(y)
    return torch.atanh((sqrt_c * norm).clamp_max(1 - ball_eps(y.dtype))) * y / (sqrt_c * norm)


def project(x: torch.Tensor, c: float) -> torch.Tensor:
    """Pull points on or beyond the boundary in to radius (1 - eps) / sqrt(c); others are unchanged."""
    max_norm = (1 - ball_eps(x.dtype)) / c**0.5
    norm = _norm(x)
    return torch.where(norm > max_norm, x / norm * max_norm, x)


def poincare_distance(x: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    """Geodesic distance of points x and y (..., D), broadcast -> (...)."""
    x, y = project(x, c), project(y, c)
    gap = (x - y).square().sum(dim=-1)
    return _distance_from_gap(gap, x.square().sum(dim=-1), y.square().sum(dim=-1), c)


def pairwise_poincare_distance(x: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    """Distances of all pairs, x (..., N, D) and y (..., M, D) -> (..., N, M).

    The squared gaps come from |x|^2 + |y|^2 - 2 x.y, so no (N, M, D) difference tensor is built.
    That expansion cancels for nearly equal points: their distance is off by about
    sqrt(machine eps) / sqrt(conformal factor), small next to attention logits but large near the
    boundary; ``poincare_distance`` is exact there.
    """
    x, y = project(x, c), project(y, c)
    x_sq, y_sq = x.square().sum(dim=-1)[..., :, None], y.square().sum(dim=-1)[..., None, :]  # (..., N, 1), (..., 1, M)
    gap = (x_sq + y_sq - 2 * x @ y.transpose(-1, -2)).clamp_min(0.0)  # (..., N, M)
    return _distance_from_gap(gap, x_sq, y_sq, c)


def _distance_from_gap(gap: torch.Tensor, x_sq: torch.Tensor, y_sq: torch.Tensor, c: float) -> torch.Tensor:
    """Distance from the squared Euclidean gap |x - y|^2 and the squared norms (broadcastable)."""
    positive = gap > 0
    # sqrt has an infinite slope at 0: take it only where the gap is positive, so x = y has gradient 0.
    length = torch.where(positive, torch.where(positive, gap, 1.0).sqrt(), 0.0)  # |x - y|
    conformal = (1 - c * x_sq) * (1 - c * y_sq)  # > 0 for projected points
    stretch = 2 * c * gap / conformal  # a = cosh(sqrt(c) d) - 1
    root = length * (2 * c * (stretch + 2) / conformal).sqrt()  # sqrt(a (a + 2))
    return torch.log1p(stretch + root) / c**0.5


def _norm(x: torch.Tensor) -> torch.Tensor:
    """(..., D) -> (..., 1), clamped away from zero so it can divide."""
    return torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(MIN_NORM)


# ---------------------------------------------------------------- kernel


def hyperbolic_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    inverse_temperature: torch.Tensor,
    curvature: float = 1.0,
    mask: torch.Tensor | None = None,
    causal: bool = False,
) -> torch.Tensor:
    """(B, h, N, d) queries, keys, values; ``inverse_temperature`` (h,); ``mask`` (B, N) -> (B, h, N, d)."""
    distances = pairwise_poincare_distance(expmap0(q, curvature), expmap0(k, curvature), curvature)  # (B, h, N, N)
    logits = -inverse_temperature[:, None, None] * distances
    visible = visible_keys(mask, q.shape[-2], causal, q.device)  # (B or 1, 1, N, N) or None
    if visible is not None:
        logits = logits.masked_fill(~visible, float("-inf"))
    return logits.softmax(dim=-1) @ v  # the tangent-space weighted mean of the values


# ---------------------------------------------------------------- module


class HyperbolicAttention(nn.Module):
    """Multi-head Poincare-distance attention: ``forward(x (B, N, D), mask (B, N)) -> (B, N, D)``."""

    def __init__(
        self, dim: int, heads: int = 4, curvature: float = 1.0, dropout: float = 0.0, causal: bool = False
    ) -> None:
        super().__init__()
        if not curvature > 0:
            raise ValueError(f"curvature must be > 0, but got {curvature}")
        self.projections = MultiHeadProjections(dim, heads)
        self.log_inverse_temperature = nn.Parameter(torch.zeros(heads))
        self.curvature = curvature
        self.causal = causal
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.projections.split(x)  # each (B, h, N, d)
        beta = self.log_inverse_temperature.exp()  # (h,)
        out = hyperbolic_attention(q, k, v, beta, self.curvature, mask, self.causal)  # (B, h, N, d)
        return self.dropout(self.projections.merge(out))


@register_attention("hyperbolic")
def hyperbolic(
    dim: int, *, heads: int = 4, curvature: float = 1.0, dropout: float = 0.0, causal: bool = False
) -> HyperbolicAttention:
    return HyperbolicAttention(dim, heads=heads, curvature=curvature, dropout=dropout, causal=causal)
