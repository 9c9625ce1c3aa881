from __future__ import annotations

import pytest
import torch

from tests.trainables.attention_helpers import heads_and_mask
from trainables.attention.boundary_aware import BoundaryAwareAttention, boundary_biased_attention
from trainables.attention.softmax import softmax_attention, visible_keys


def seed_reference(q, k, v, scores, mask):
    """The text-segmentation seed's definition, nested loop included, with the shared masking rule."""
    batch, tokens = scores.shape
    bias = torch.zeros(batch, tokens, tokens, dtype=scores.dtype)
    for i in range(tokens):
        for j in range(tokens):
            bias[:, i, j] = (scores[:, i] + scores[:, j]) * 0.5
    logits = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5 + bias[:, None]
    visible = visible_keys(mask, tokens, causal=False)
    if visible is not None:
        logits = logits.masked_fill(~visible, float("-inf"))
    return logits.softmax(dim=-1) @ v


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("batch", [1, 3])
def test_vectorised_bias_equals_the_seeds_nested_loop(masked, batch):
    q, k, v, mask = heads_and_mask(batch, 9)
    scores = torch.rand(batch, 9, dtype=torch.float64)
    mask = mask if masked else None
    expected = seed_reference(q, k, v, scores, mask)
    torch.testing.assert_close(boundary_biased_attention(q, k, v, scores, mask), expected)


def test_equal_scores_everywhere_change_nothing():
    q, k, v, mask = heads_and_mask(3, 9)
    constant = torch.full((3, 9), 0.7, dtype=torch.float64)
    torch.testing.assert_close(boundary_biased_attention(q, k, v, constant, mask), softmax_attention(q, k, v, mask))


def test_keys_scored_as_boundaries_get_more_weight():
    # With zero queries the logits are the bias alone; s_i cancels, so weights are softmax_j(s_j / 2).
    _, _, v, mask = heads_and_mask(1, 9)
    zeros = torch.zeros_like(v)
    scores = torch.rand(1, 9, dtype=torch.float64)
    weights = (scores / 2).masked_fill(~mask, float("-inf")).softmax(dim=-1)  # (1, N)
    out = boundary_biased_attention(zeros, zeros, v, scores, mask)[:, :, mask[0]]  # real queries (1, h, n, d)
    expected = weights[:, None, None, :] @ v  # (1, h, 1, d), the same for every real query
    torch.testing.assert_close(out, expected.expand_as(out))

def test_boundary_scores_are_probabilities_per_token():
    torch.manual_seed(0)
    scores = BoundaryAwareAttention(32).boundary_scores(torch.randn(2, 7, 32))
    assert scores.shape == (2, 7) and ((scores > 0) & (scores < 1)).all()
