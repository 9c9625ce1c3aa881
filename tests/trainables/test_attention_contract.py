"""The contract every registered attention mechanism keeps; a new mechanism adds no test code here."""
from __future__ import annotations

import pytest
import torch

from trainables.attention import attention_kinds, attention_options, create_attention
from trainables.registry import UnknownNameError

DIM = 32
KINDS = attention_kinds()
CAUSAL_KINDS = [kind for kind in KINDS if "causal" in attention_options(kind)]


def build(kind: str, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_attention(kind, DIM, **options).eval()


def padded_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 11, DIM, generator=generator)
    mask = torch.ones(3, 11, dtype=torch.bool)
    mask[0, 4:] = False
    mask[1, :2] = False  # padding at the front too
    mask[2, 5] = False  # and a hole in the middle
    return x, mask


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch, tokens", [(1, 1), (1, 7), (4, 33)])
def test_shape_and_finite_output(kind, batch, tokens):
    attention = build(kind)
    out = attention(torch.randn(batch, tokens, DIM), None)
    assert out.shape == (batch, tokens, DIM) and torch.isfinite(out).all()


@pytest.mark.parametrize("kind", KINDS)
def test_masked_tokens_never_change_the_others(kind):
    attention = build(kind)
    x, mask = padded_batch()
    garbage = torch.where(mask[..., None], x, 1e3 * torch.randn_like(x))
    reference, changed = attention(x, mask), attention(garbage, mask)
    assert torch.isfinite(changed).all()
    torch.testing.assert_close(reference[mask], changed[mask], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", CAUSAL_KINDS)
def test_causal_tokens_never_see_the_future(kind):
    attention = build(kind, causal=True)
    x, mask = padded_batch()
    future = x.clone()
    future[:, 6:] = torch.randn_like(future[:, 6:])
    torch.testing.assert_close(attention(x, mask)[:, :6], attention(future, mask)[:, :6], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_every_parameter_gets_a_gradient(kind):
    attention = build(kind).train()
    x, mask = padded_batch()
    attention(x, mask)[mask].square().sum().backward()
    missing = [name for name, p in attention.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="known: .*softmax"):
        create_attention("quantum", DIM)


@pytest.mark.parametrize("kind", [kind for kind in KINDS if hasattr(build(kind), "attention_weights")])
def test_attention_weights_are_what_forward_mixes_with(kind):
    attention = build(kind)
    x, mask = padded_batch()
    weights = attention.attention_weights(x, mask)  # (B, h, N, N)
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]), rtol=1e-4, atol=1e-4)
    assert (weights[~mask[:, None, None, :].expand_as(weights) & ~torch.eye(11, dtype=torch.bool)] == 0).all()
    _, _, v = attention.projections.split(x)
    mixed = attention.projections.merge(weights @ v)
    torch.testing.assert_close(mixed[mask], attention(x, mask)[mask], rtol=1e-3, atol=1e-4)
