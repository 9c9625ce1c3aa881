from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from tests.trainables.attention_helpers import LargestAllocation, heads_and_mask
from trainables.attention.localized import LocalizedAttention, band_attention
from trainables.attention.softmax import SoftmaxAttention, visible_keys


def dense_band_attention(q, k, v, mask, window_size, causal):
    """The definition: dense softmax attention with every key outside |i - j| <= window_size // 2 hidden."""
    tokens = q.shape[-2]
    positions = torch.arange(tokens)
    band = (positions[:, None] - positions[None, :]).abs() <= window_size // 2  # (N, N)
    visible = visible_keys(mask, tokens, causal)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=band if visible is None else visible & band)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("window_size", [1, 4, 7, 40])
@pytest.mark.parametrize("batch, tokens", [(1, 1), (1, 13), (3, 13)])
def test_equals_dense_attention_restricted_to_the_band(causal, masked, window_size, batch, tokens):
    q, k, v, mask = heads_and_mask(batch, tokens)
    mask = mask if masked else None
    expected = dense_band_attention(q, k, v, mask, window_size, causal)
    torch.testing.assert_close(band_attention(q, k, v, mask, window_size, causal), expected, rtol=1e-12, atol=1e-12)


def test_a_window_wider_than_the_sequence_is_dense_softmax_attention():
    torch.manual_seed(0)
    localized = LocalizedAttention(32, heads=4, window_size=64).eval()
    dense = SoftmaxAttention(32, heads=4).eval()
    dense.load_state_dict(localized.state_dict())
    x, mask = torch.randn(1, 20, 32), torch.arange(20)[None] < 15
    torch.testing.assert_close(localized(x, mask)[mask], dense(x, mask)[mask])


@pytest.mark.parametrize("causal", [False, True])
def test_memory_grows_linearly_with_the_sequence_never_as_n_squared(causal):
    largest = {}
    for tokens in (2048, 4096):
        q, k, v, mask = heads_and_mask(1, tokens, torch.float32, heads=1)
        with LargestAllocation() as watch:
            band_attention(q, k, v, mask, window_size=9, causal=causal)
        largest[tokens] = watch.elements
    assert largest[4096] <= 2 * largest[2048]
    assert largest[4096] <= 4096 * 8 * 9  # at most N * d * w: one band of keys per query


def test_rejects_an_empty_window():
    with pytest.raises(ValueError, match="window_size must be >= 1, but got 0"):
        LocalizedAttention(32, window_size=0)
