from __future__ import annotations

import pytest
import torch

from trainables.attention.performer import KERNELS as PERFORMER_KERNELS
from trainables.attention.performer import PerformerAttention


@pytest.mark.parametrize("kernel", PERFORMER_KERNELS)
def test_masked_tokens_have_no_influence(kernel):
    torch.manual_seed(0)
    attention = PerformerAttention(32, heads=4, nb_features=16, kernel=kernel).eval()
    x = torch.randn(2, 6, 32)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    changed = torch.where(mask[..., None], x, 100 * torch.randn_like(x))
    torch.testing.assert_close(attention(x, mask)[mask], attention(changed, mask)[mask])


def test_softmax_kernel_approximates_exact_attention():
    torch.manual_seed(0)
    attention = PerformerAttention(16, heads=1, nb_features=4096, kernel="softmax").eval()
    x = 0.5 * torch.randn(1, 8, 16)
    q, k, v = attention.projections.to_qkv(x).chunk(3, dim=-1)
    exact = attention.projections.to_out(torch.softmax(q @ k.transpose(1, 2) / 16**0.5, dim=-1) @ v)
    torch.testing.assert_close(attention(x), exact, atol=0.05, rtol=0.05)


def test_rejects_bad_configuration():
    with pytest.raises(ValueError, match="divisible"):
        PerformerAttention(30, heads=4)
    with pytest.raises(ValueError, match="known: relu, elu, softmax"):
        PerformerAttention(32, kernel="cosine")
