from __future__ import annotations

import pytest
import torch

from tests.trainables.attention_helpers import LargestAllocation, heads_and_mask
from trainables.attention.softmax import SoftmaxAttention, softmax_attention
from trainables.attention.tiled import MIN_TILE, TILE_TENSORS, TiledAttention, adaptive_tile_size, tiled_attention

PRECISION = [(torch.float64, 1e-6), (torch.float32, 1e-5)]


def assert_relative_error_below(actual: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    """Largest deviation relative to the largest reference value: near-zero entries cannot inflate it."""
    error = (actual - expected).abs().max() / expected.abs().max()
    assert error <= rtol, f"relative error {error:.2e} > {rtol:.0e}"


@pytest.mark.parametrize("dtype, rtol", PRECISION)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("batch, tokens, tile_size", [(1, 1, 16), (3, 37, 8), (3, 37, 64), (3, 64, 16), (1, 19, 1)])
def test_equals_dense_softmax_attention(dtype, rtol, causal, masked, batch, tokens, tile_size):
    q, k, v, mask = heads_and_mask(batch, tokens, dtype)
    mask = mask if masked else None
    expected = softmax_attention(q, k, v, mask, causal)
    assert_relative_error_below(tiled_attention(q, k, v, mask, causal, tile_size), expected, rtol)


@pytest.mark.parametrize("dtype, rtol", PRECISION)
@pytest.mark.parametrize("causal", [False, True])
def test_gradients_equal_those_of_dense_attention(dtype, rtol, causal):
    q, k, v, mask = heads_and_mask(3, 37, dtype)
    inputs = [t.requires_grad_() for t in (q, k, v)]
    upstream = torch.randn(3, 2, 37, 8, dtype=dtype, generator=torch.Generator().manual_seed(1))
    tiled = torch.autograd.grad(tiled_attention(*inputs, mask, causal, 8), inputs, upstream)
    dense = torch.autograd.grad(softmax_attention(*inputs, mask, causal), inputs, upstream)
    for actual, expected in zip(tiled, dense):
        assert_relative_error_below(actual, expected, rtol)


def test_backward_passes_gradcheck():
    q, k, v, mask = heads_and_mask(3, 7, heads=1, head_dim=3)
    inputs = [t.requires_grad_() for t in (q, k, v)]
    assert torch.autograd.gradcheck(lambda *qkv: tiled_attention(*qkv, mask, True, 3), inputs)


@pytest.mark.parametrize("causal", [False, True])
def test_queries_without_any_real_key_stay_finite(causal):
    q, k, v, _ = heads_and_mask(2, 21, torch.float32)
    nothing = torch.zeros(2, 21, dtype=torch.bool)
    inputs = [t.requires_grad_() for t in (q, k, v)]
    out = tiled_attention(*inputs, nothing, causal, 8)
    out.sum().backward()
    torch.testing.assert_close(out, v)  # each token sees only itself
    assert all(torch.isfinite(t.grad).all() for t in inputs)


def test_forward_and_backward_memory_grow_as_n_times_tile():
    tile_size, largest = 64, {}
    for tokens in (2048, 4096):
        q, k, v, mask = heads_and_mask(1, tokens, torch.float32, heads=1)
        inputs = [t.requires_grad_() for t in (q, k, v)]
        with LargestAllocation() as watch:
            tiled_attention(*inputs, mask, True, tile_size).sum().backward()
        largest[tokens] = watch.elements
    assert largest[4096] <= 2 * largest[2048]
    assert largest[4096] <= 4096 * tile_size  # one tile of scores; dense attention would need 4096**2


@pytest.mark.parametrize("tokens, batch_heads, budget_mb", [(4096, 16, 64.0), (1000, 3, 8.0), (777, 1, 0.5)])
def test_adaptive_tile_is_the_largest_power_of_two_within_budget(tokens, batch_heads, budget_mb):
    tile = adaptive_tile_size(tokens, batch_heads, 4, budget_mb)
    bytes_per_key = TILE_TENSORS * batch_heads * tokens * 4
    assert tile & (tile - 1) == 0 and bytes_per_key * tile <= budget_mb * 2**20 < bytes_per_key * 2 * tile


def test_adaptive_tile_is_clamped_to_the_minimum_and_the_sequence():
    assert adaptive_tile_size(4096, 64, 4, memory_budget_mb=0.001) == MIN_TILE
    assert adaptive_tile_size(300, 1, 4, memory_budget_mb=1e6) == 300
    assert adaptive_tile_size(5, 1, 4, memory_budget_mb=0.001) == 5


@pytest.mark.parametrize("tile_size", [7, "adaptive"])
def test_module_equals_softmax_attention_with_the_same_weights(tile_size):
    torch.manual_seed(0)
    tiled = TiledAttention(32, heads=4, tile_size=tile_size, memory_budget_mb=0.01, causal=True).eval()
    dense = SoftmaxAttention(32, heads=4, causal=True).eval()
    dense.load_state_dict(tiled.state_dict())
    x, mask = torch.randn(2, 45, 32), torch.arange(45)[None] >= torch.tensor([[0], [6]])
    assert tiled.tile_size_for(torch.empty(2, 4, 45, 8)) == (7 if tile_size == 7 else MIN_TILE)
    torch.testing.assert_close(tiled(x, mask), dense(x, mask))


@pytest.mark.parametrize(
    "options, message",
    [({"tile_size": 0}, "tile_size must be an int >= 1 or 'adaptive'"), ({"tile_size": "auto"}, "but got 'auto'"),
     ({"memory_budget_mb": 0}, "memory_budget_mb must be > 0")],
)
def test_rejects_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        TiledAttention(32, **options)
