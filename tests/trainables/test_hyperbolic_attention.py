from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tests.trainables.attention_helpers import heads_and_mask
from trainables.attention.hyperbolic import (
    HyperbolicAttention,
    expmap0,
    hyperbolic_attention,
    logmap0,
    pairwise_poincare_distance,
    poincare_distance,
)
from trainables.attention.softmax import visible_keys

CURVATURES = st.floats(0.05, 5.0)
DTYPES = [torch.float32, torch.float64]
properties = settings(max_examples=60, deadline=None)


def vectors(bound: float, dims: int | None = None) -> st.SearchStrategy[torch.Tensor]:
    """Float64 vectors of 1..8 dimensions (or exactly ``dims``) with entries in [-bound, bound]."""
    sizes = st.just(dims) if dims else st.integers(1, 8)
    elements = st.floats(-bound, bound)
    return sizes.flatmap(lambda size: arrays(np.float64, size, elements=elements)).map(torch.from_numpy)


def ball_points(dims: int, bound: float = 4.0) -> st.SearchStrategy[torch.Tensor]:
    """Points inside the unit-curvature ball; the default bound reaches the projected boundary."""
    return vectors(bound, dims).map(lambda v: expmap0(v, 1.0))


def exact_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """arcosh(1 + a) at c = 1 with a = 2|x - y|^2 / ((1 - |x|^2)(1 - |y|^2)) in exact rationals.

    arcosh(1 + a) is evaluated as log1p(a + sqrt(a (a + 2))): acosh of the rounded 1 + a would lose
    the small distances.
    """
    xs, ys = [Fraction(float(value)) for value in x], [Fraction(float(value)) for value in y]
    gap = sum((p - q) ** 2 for p, q in zip(xs, ys))
    a = float(2 * gap / ((1 - sum(p * p for p in xs)) * (1 - sum(q * q for q in ys))))
    return math.log1p(a + math.sqrt(a * (a + 2)))


def mobius_distance(x: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    """The textbook definition 2/sqrt(c) artanh(sqrt(c) |(-x) (+)_c y|), through Mobius addition."""
    xy, x_sq, y_sq = (-x * y).sum(-1, keepdim=True), x.square().sum(-1, keepdim=True), y.square().sum(-1, keepdim=True)
    numerator = (1 + 2 * c * xy + c * y_sq) * -x + (1 - c * x_sq) * y
    denominator = 1 + 2 * c * xy + c**2 * x_sq * y_sq
    return 2 / c**0.5 * torch.atanh(c**0.5 * torch.linalg.vector_norm(numerator / denominator, dim=-1))


@properties
@given(direction=vectors(1.0), scale=st.floats(0.0, 1.75), c=CURVATURES)
def test_log_map_inverts_exp_map(direction, scale, c):
    v = direction * scale / c**0.5  # sqrt(c) |v| <= 1.75 * sqrt(8) < 5
    torch.testing.assert_close(logmap0(expmap0(v, c), c), v, rtol=1e-6, atol=1e-6)


@properties
@given(v=vectors(1e6), c=CURVATURES, dtype=st.sampled_from(DTYPES))
def test_exp_map_lands_strictly_inside_the_ball(v, c, dtype):
    point = expmap0(v.to(dtype), c)
    assert torch.isfinite(point).all() and torch.linalg.vector_norm(point) < 1 / c**0.5


@properties
@given(x=ball_points(3), y=ball_points(3))
def test_distance_is_symmetric_non_negative_and_zero_on_the_diagonal(x, y):
    assert poincare_distance(x, y, 1.0) == poincare_distance(y, x, 1.0) >= 0
    assert poincare_distance(x, x, 1.0) == 0


@properties
@given(x=ball_points(4, bound=1.0), y=ball_points(4, bound=1.0))
def test_distance_equals_the_mobius_definition(x, y):
    # Away from the boundary, where the Mobius form itself is accurate (it cancels badly near it).
    torch.testing.assert_close(poincare_distance(x, y, 1.0), mobius_distance(x, y, 1.0), rtol=1e-9, atol=1e-12)


@properties
@given(x=ball_points(4), y=ball_points(4))
def test_distance_is_accurate_up_to_the_boundary(x, y):
    assert math.isclose(poincare_distance(x, y, 1.0).item(), exact_distance(x, y), rel_tol=1e-9, abs_tol=1e-12)


def test_pairwise_distances_equal_elementwise_ones():
    generator = torch.Generator().manual_seed(0)
    x, y = (expmap0(0.5 * torch.randn(2, 7, 5, generator=generator, dtype=torch.float64), 2.0) for _ in range(2))
    elementwise = poincare_distance(x[:, :, None], y[:, None], 2.0)  # (2, 7, 7)
    torch.testing.assert_close(pairwise_poincare_distance(x, y, 2.0), elementwise)
    self_distances = pairwise_poincare_distance(x, x, 2.0)
    torch.testing.assert_close(self_distances, self_distances.mT)
    diagonal = self_distances.diagonal(dim1=-2, dim2=-1)  # not exactly 0: the Gram expansion's sqrt(eps) error
    torch.testing.assert_close(diagonal, torch.zeros_like(diagonal), rtol=0.0, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_vectors_map_to_the_origin_with_identity_gradients(dtype):
    v = torch.zeros(3, 5, dtype=dtype, requires_grad=True)
    origin = expmap0(v, 1.0)
    back = logmap0(origin, 1.0)
    distance = poincare_distance(origin, torch.zeros_like(origin), 1.0)
    (back.sum() + distance.sum()).backward()
    assert (origin == 0).all() and (back == 0).all() and (distance == 0).all()
    torch.testing.assert_close(v.grad, torch.ones_like(v))  # d expmap0 = d logmap0 = identity at 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("radius", [1.0, 2.0, 1e6])  # on the boundary, beyond it, far beyond
def test_points_on_or_beyond_the_boundary_stay_finite(dtype, c, radius):
    direction = torch.nn.functional.normalize(torch.randn(4, 6, dtype=dtype), dim=-1)
    points = (radius / c**0.5 * direction).requires_grad_()
    others = points.flip(0)
    results = [logmap0(points, c), poincare_distance(points, others, c), pairwise_poincare_distance(points, others, c)]
    sum(result.sum() for result in results).backward()
    assert all(torch.isfinite(result).all() for result in results) and torch.isfinite(points.grad).all()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_weights_are_a_softmax_of_negative_scaled_distances(causal, masked):
    q, k, v, mask = heads_and_mask(3, 11)
    mask = mask if masked else None
    beta = torch.tensor([0.5, 2.0], dtype=torch.float64)
    distances = poincare_distance(expmap0(q, 0.7)[..., :, None, :], expmap0(k, 0.7)[..., None, :, :], 0.7)
    logits = -beta[:, None, None] * distances  # (B, h, N, N)
    visible = visible_keys(mask, 11, causal)
    expected = (logits if visible is None else logits.masked_fill(~visible, float("-inf"))).softmax(-1) @ v
    torch.testing.assert_close(hyperbolic_attention(q, k, v, beta, 0.7, mask, causal), expected)


@pytest.mark.parametrize("scale", [0.0, 1e6])
def test_module_is_finite_for_zero_and_huge_inputs(scale):
    torch.manual_seed(0)
    attention = HyperbolicAttention(32, curvature=2.0)
    x = scale * torch.randn(1, 9, 32)
    out = attention(x, torch.arange(9)[None] < 6)
    out.square().sum().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in attention.parameters())


@pytest.mark.parametrize("curvature", [0.0, -1.0])
def test_rejects_non_positive_curvature(curvature):
    with pytest.raises(ValueError, match="curvature must be > 0"):
        HyperbolicAttention(32, curvature=curvature)
