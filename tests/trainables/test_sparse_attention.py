from __future__ import annotations

import pytest
import torch

from trainables.attention import create_attention

DIM = 16


def build(scale_factor: float, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_attention("sparse", DIM, scale_factor=scale_factor, **options).eval()


def reference(attention: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Group by group with an explicit loop, from the module's own evaluation permutation."""
    tokens = x.shape[1]
    heads = attention.heads(tokens)
    padded = -(-tokens // heads) * heads
    q, k, v = attention.projections.to_qkv(x).chunk(3, dim=-1)  # each (B, N, D)
    out = torch.zeros_like(x)
    for group in attention.permutation(padded, x.device).view(heads, -1):
        members = group[group < tokens]  # padding positions are not tokens
        weights = torch.softmax(q[:, members] @ k[:, members].transpose(1, 2) / DIM**0.5, dim=-1)
        out[:, members] = weights @ v[:, members]
    return attention.projections.to_out(out)


def test_one_head_is_full_softmax_attention():
    sparse = build(scale_factor=0.01)  # int(0.01 * 20) = 0 -> one head holding every token
    dense = create_attention("softmax", DIM, heads=1).eval()
    dense.load_state_dict(sparse.state_dict())
    x = torch.randn(2, 20, DIM)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 13:] = False
    torch.testing.assert_close(sparse(x), dense(x))
    torch.testing.assert_close(sparse(x, mask)[mask], dense(x, mask)[mask])


@pytest.mark.parametrize("training", [False, True])
def test_the_inverse_permutation_restores_token_order(training):
    # One token per head: each token attends only to itself, so its output is its own value,
    # projected. Without the inverse permutation the outputs would come back shuffled.
    attention = build(scale_factor=1.0).train(training)
    x = torch.randn(3, 12, DIM)
    assert not torch.equal(attention.permutation(12, x.device), torch.arange(12))
    values = attention.projections.to_qkv(x).chunk(3, dim=-1)[2]
    torch.testing.assert_close(attention(x), attention.projections.to_out(values))


@pytest.mark.parametrize("tokens", [20, 11, 7])  # 10 heads of 2; 5 heads of 3 with 4 padding; 3 of 3 with 2
def test_matches_a_group_by_group_reference(tokens):
    attention = build(scale_factor=0.5)
    x = torch.randn(2, tokens, DIM)
    out = attention(x)
    assert out.shape == (2, tokens, DIM)
    torch.testing.assert_close(out, reference(attention, x))


def test_evaluation_is_deterministic_and_training_is_not():
    attention = build(scale_factor=0.5)
    x = torch.randn(2, 30, DIM)
    torch.testing.assert_close(attention(x), attention(x), rtol=0, atol=0)
    attention.train()
    assert not torch.allclose(attention(x), attention(x))


@pytest.mark.parametrize("training", [False, True])
def test_masked_tokens_have_no_influence(training):
    attention = build(scale_factor=0.5).train(training)
    x = torch.randn(2, 13, DIM)
    mask = torch.ones(2, 13, dtype=torch.bool)
    mask[0, 9:], mask[1, :3] = False, False
    garbage = torch.where(mask[..., None], x, 1e3 * torch.randn_like(x))
    torch.manual_seed(1)  # the same training permutation for both calls
    clean = attention(x, mask)
    torch.manual_seed(1)
    torch.testing.assert_close(clean[mask], attention(garbage, mask)[mask])


def test_head_count_follows_the_seed():
    attention = build(scale_factor=0.5)
    assert [attention.heads(n) for n in (1, 3, 50, 51, 200)] == [1, 1, 25, 25, 100]
    with pytest.raises(ValueError, match="scale_factor"):
        create_attention("sparse", DIM, scale_factor=0.0)
