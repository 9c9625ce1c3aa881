"""Channel and temporal gating: what each gate scales, and what it may look at."""
from __future__ import annotations

import pytest
import torch

from trainables.attention import create_attention

DIM = 24


def build(kind: str, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_attention(kind, DIM, **options).eval()


def gates(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return out / x  # x has no zeros (randn), so this recovers the multiplier


def test_channel_gate_scales_each_feature_alike_in_every_token():
    x = torch.randn(2, 9, DIM)
    gate = gates(build("channel")(x), x)  # (B, N, D)
    assert ((gate > 0) & (gate < 1)).all()
    torch.testing.assert_close(gate, gate[:, :1].expand_as(gate))


def test_channel_gate_statistics_ignore_masked_tokens():
    gate = build("channel")
    x = torch.randn(1, 9, DIM)
    mask = torch.zeros(1, 9, dtype=torch.bool)
    mask[0, :5] = True
    torch.testing.assert_close(gate(x, mask)[:, :5], gate(x[:, :5]))


def test_channel_gate_bottleneck_follows_the_reduction():
    gate = create_attention("channel", 129, reduction=16)
    assert sum(p.numel() for p in gate.parameters()) == 2 * 129 * 8  # 129 -> 8 -> 129, no bias
    assert sum(p.numel() for p in create_attention("channel", 8, reduction=16).parameters()) == 2 * 8  # width >= 1


def test_temporal_gate_scales_each_token_alike_in_every_feature():
    x = torch.randn(2, 9, DIM)
    gate = gates(build("temporal")(x), x)
    assert ((gate > 0) & (gate < 1)).all()
    torch.testing.assert_close(gate, gate[..., :1].expand_as(gate))


def test_temporal_gate_sees_only_its_neighbourhood():
    gate = build("temporal", kernel_size=5)
    x = torch.randn(1, 15, DIM)
    changed = x.clone()
    changed[0, 7] += 3.0
    moved = (gate(changed) - gate(x)).abs().amax(dim=-1)[0]  # (N,)
    assert moved[5:10].gt(0).all() and not moved[:5].any() and not moved[10:].any()


def test_temporal_gate_treats_masked_tokens_as_zero_padding():
    gate = build("temporal")
    x = torch.randn(2, 12, DIM)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[0, 8:], mask[1, 3] = False, False
    zeroed = x.masked_fill(~mask[..., None], 0.0)
    torch.testing.assert_close(gate(x, mask)[mask], gate(zeroed)[mask])


def test_rejects_bad_configuration():
    with pytest.raises(ValueError, match="odd"):
        create_attention("temporal", DIM, kernel_size=4)
    with pytest.raises(ValueError, match="reduction"):
        create_attention("channel", DIM, reduction=0)
